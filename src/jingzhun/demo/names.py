"""Chinese name pools with pinyin, for vectorized name, e-mail and typo generation.

Given-name characters are grouped so that several characters share one pinyin
(静/婧/晶): CRM clerks who type names by pinyin IME pick the wrong homophone
(同音字), which is the commonest real-world name typo the identity stage must absorb.
"""

from __future__ import annotations

import numpy as np

# Surname, pinyin, relative frequency (roughly the 2020 census ranking).
SURNAMES: tuple[tuple[str, str, float], ...] = (
    ("王", "wang", 7.1), ("李", "li", 7.0), ("张", "zhang", 6.7), ("刘", "liu", 5.4),
    ("陈", "chen", 4.5), ("杨", "yang", 3.1), ("黄", "huang", 2.5), ("赵", "zhao", 2.3),
    ("吴", "wu", 2.0), ("周", "zhou", 1.9), ("徐", "xu", 1.5), ("孙", "sun", 1.4),
    ("马", "ma", 1.3), ("朱", "zhu", 1.3), ("胡", "hu", 1.1), ("郭", "guo", 1.1),
    ("何", "he", 1.0), ("林", "lin", 1.0), ("高", "gao", 1.0), ("罗", "luo", 0.9),
    ("郑", "zheng", 0.9), ("梁", "liang", 0.8), ("谢", "xie", 0.7), ("宋", "song", 0.7),
    ("唐", "tang", 0.7), ("许", "xu", 0.6), ("韩", "han", 0.6), ("冯", "feng", 0.6),
    ("邓", "deng", 0.6), ("曹", "cao", 0.6), ("彭", "peng", 0.5), ("曾", "zeng", 0.5),
    ("肖", "xiao", 0.5), ("田", "tian", 0.5), ("董", "dong", 0.5), ("袁", "yuan", 0.4),
    ("潘", "pan", 0.4), ("于", "yu", 0.4), ("蒋", "jiang", 0.4), ("蔡", "cai", 0.4),
    ("余", "yu", 0.4), ("杜", "du", 0.4), ("叶", "ye", 0.4), ("程", "cheng", 0.4),
    ("苏", "su", 0.3), ("魏", "wei", 0.3), ("吕", "lv", 0.3), ("丁", "ding", 0.3),
    ("任", "ren", 0.3), ("沈", "shen", 0.3), ("姚", "yao", 0.3), ("卢", "lu", 0.3),
    ("姜", "jiang", 0.3), ("崔", "cui", 0.3), ("钟", "zhong", 0.3), ("谭", "tan", 0.3),
    ("陆", "lu", 0.3), ("汪", "wang", 0.3), ("范", "fan", 0.3), ("金", "jin", 0.3),
    ("欧阳", "ouyang", 0.1), ("司马", "sima", 0.02),
)

# Given-name characters: char, pinyin, usage ("F" female, "M" male, "N" either).
GIVEN: tuple[tuple[str, str, str], ...] = (
    ("静", "jing", "F"), ("婧", "jing", "F"), ("晶", "jing", "F"),
    ("丽", "li", "F"), ("莉", "li", "F"), ("俐", "li", "F"),
    ("婷", "ting", "F"), ("亭", "ting", "F"), ("芳", "fang", "F"), ("方", "fang", "N"),
    ("敏", "min", "F"), ("闽", "min", "N"), ("娜", "na", "F"), ("纳", "na", "N"),
    ("燕", "yan", "F"), ("艳", "yan", "F"), ("雁", "yan", "F"),
    ("玲", "ling", "F"), ("琳", "lin", "F"), ("林", "lin", "N"),
    ("红", "hong", "F"), ("虹", "hong", "F"), ("宏", "hong", "M"),
    ("梅", "mei", "F"), ("媚", "mei", "F"), ("雪", "xue", "F"), ("学", "xue", "M"),
    ("佳", "jia", "N"), ("嘉", "jia", "N"), ("家", "jia", "M"),
    ("欣", "xin", "F"), ("鑫", "xin", "M"), ("新", "xin", "N"),
    ("怡", "yi", "F"), ("仪", "yi", "F"), ("宜", "yi", "N"),
    ("雨", "yu", "F"), ("宇", "yu", "M"), ("语", "yu", "F"),
    ("子", "zi", "N"), ("紫", "zi", "F"), ("梓", "zi", "N"),
    ("涵", "han", "F"), ("晗", "han", "F"), ("含", "han", "F"),
    ("轩", "xuan", "M"), ("萱", "xuan", "F"), ("宣", "xuan", "N"),
    ("晨", "chen", "N"), ("辰", "chen", "M"), ("琛", "chen", "M"),
    ("思", "si", "F"), ("斯", "si", "N"), ("丝", "si", "F"),
    ("文", "wen", "N"), ("雯", "wen", "F"), ("闻", "wen", "M"),
    ("慧", "hui", "F"), ("惠", "hui", "F"), ("蕙", "hui", "F"),
    ("颖", "ying", "F"), ("莹", "ying", "F"), ("盈", "ying", "F"),
    ("琪", "qi", "F"), ("琦", "qi", "F"), ("淇", "qi", "F"),
    ("伟", "wei", "M"), ("玮", "wei", "M"), ("炜", "wei", "M"),
    ("杰", "jie", "M"), ("洁", "jie", "F"), ("磊", "lei", "M"), ("蕾", "lei", "F"),
    ("涛", "tao", "M"), ("韬", "tao", "M"), ("军", "jun", "M"), ("君", "jun", "N"),
    ("勇", "yong", "M"), ("永", "yong", "M"), ("斌", "bin", "M"), ("彬", "bin", "M"),
    ("华", "hua", "N"), ("桦", "hua", "N"), ("明", "ming", "M"), ("铭", "ming", "M"),
    ("浩", "hao", "M"), ("昊", "hao", "M"), ("皓", "hao", "M"),
    ("博", "bo", "M"), ("波", "bo", "M"), ("柏", "bo", "M"),
    ("凯", "kai", "M"), ("恺", "kai", "M"), ("楷", "kai", "M"),
    ("鹏", "peng", "M"), ("朋", "peng", "M"), ("飞", "fei", "M"), ("菲", "fei", "F"),
    ("强", "qiang", "M"), ("蔷", "qiang", "F"), ("平", "ping", "N"), ("萍", "ping", "F"),
    ("倩", "qian", "F"), ("茜", "qian", "F"), ("娟", "juan", "F"), ("鹃", "juan", "F"),
    ("瑶", "yao", "F"), ("遥", "yao", "N"), ("建", "jian", "M"), ("健", "jian", "M"),
    ("国", "guo", "M"), ("峰", "feng", "M"), ("锋", "feng", "M"), ("枫", "feng", "N"),
    ("晓", "xiao", "N"), ("小", "xiao", "N"), ("一", "yi", "N"), ("安", "an", "N"),
    ("若", "ruo", "F"), ("诗", "shi", "F"), ("梦", "meng", "F"), ("可", "ke", "N"),
    ("俊", "jun", "M"), ("泽", "ze", "M"), ("睿", "rui", "M"), ("瑞", "rui", "N"),
)


class NamePools:
    """Numpy arrays over the pools, plus the homophone substitution table."""

    def __init__(self) -> None:
        self.surname = np.array([s[0] for s in SURNAMES], dtype=object)
        self.surname_py = np.array([s[1] for s in SURNAMES], dtype=object)
        weights = np.array([s[2] for s in SURNAMES])
        self.surname_p = weights / weights.sum()
        self.given = np.array([g[0] for g in GIVEN], dtype=object)
        self.given_py = np.array([g[1] for g in GIVEN], dtype=object)
        usage = np.array([g[2] for g in GIVEN])
        self.female_idx = np.flatnonzero(usage != "M")
        self.male_idx = np.flatnonzero(usage != "F")
        self.homophone = self._homophones()

    def _homophones(self) -> dict[str, list[str]]:
        """char -> other characters with the same pinyin (may be empty)."""
        by_py: dict[str, list[str]] = {}
        for ch, py in zip(self.given, self.given_py, strict=True):
            by_py.setdefault(py, []).append(ch)
        return {ch: [c for c in by_py[py] if c != ch]
                for ch, py in zip(self.given, self.given_py, strict=True)}


POOLS = NamePools()
