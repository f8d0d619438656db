// The console shell: switch language (kept in the jz_lang cookie) and relabel the page.
(function () {
  var messages = JSON.parse(document.getElementById("i18n").textContent);
  function apply(lang) {
    document.documentElement.lang = lang;
    document.body.dataset.lang = lang;
    document.querySelectorAll("[data-i18n]").forEach(function (node) {
      var text = (messages[lang] || {})[node.dataset.i18n];
      if (text) { node.textContent = text; }
    });
    var link = document.getElementById("lang-switch");
    link.dataset.to = lang === "zh" ? "en" : "zh";
    link.textContent = lang === "zh" ? "English" : "中文";
  }
  document.getElementById("lang-switch").addEventListener("click", function (event) {
    event.preventDefault();
    var lang = event.currentTarget.dataset.to;
    document.cookie = "jz_lang=" + lang + "; path=/; SameSite=Lax; max-age=31536000";
    apply(lang);
  });
})();
