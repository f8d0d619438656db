"""A synthetic GBK POS export of any size, for load tests and the import benchmark.

Shaped like the demo's `pos/store_sales-*.csv` (same headers, formats and kinds of
malformed rows) but generated with numpy in one pass, so a million-row file takes
seconds and the resume test can build a file big enough to interrupt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

HEADER = ["门店编号", "门店名称", "小票号", "交易时间", "会员卡号", "会员手机号", "商品条码", "商品名称",
          "数量", "单价", "折扣", "实收金额", "支付方式", "收银员"]
STORES = ["SH001", "SH002", "BJ001", "BJ002", "GZ001", "SZ001", "HZ001", "CD001"]
PAYMENTS = np.array(["微信支付", "支付宝", "银联卡", "现金", "数字人民币"])


BARCODES = 760  # distinct products sold


def ean13(body: np.ndarray) -> np.ndarray:
    """12-digit bodies → 13-digit EAN strings with their check digit."""
    digits = (body[:, None] // 10 ** np.arange(11, -1, -1)) % 10
    total = (digits * np.tile([1, 3], 6)).sum(axis=1)
    return np.char.add(body.astype(str), ((10 - total % 10) % 10).astype(str))


def pos_table(rows: int, seed: int = 7) -> pa.Table:
    """`rows` receipt lines (1-4 per receipt, sorted by receipt), ~0.5% malformed."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 5, rows)
    receipt = np.repeat(np.arange(rows), per)[:rows]
    store = np.array(STORES)[receipt % len(STORES)]
    day = (receipt // 400) % 28 + 1
    order_id = np.char.add(np.char.add(store, np.char.zfill((250300 + day).astype(str), 6)),
                           np.char.zfill((receipt % 10000).astype(str), 4))
    order_id = np.char.add(order_id, np.char.zfill((receipt // 10000).astype(str), 4))
    hour, minute = rng.integers(10, 22, rows), rng.integers(0, 60, rows)
    stamp = np.char.add(np.char.add(np.char.add("2025-03-", np.char.zfill(day.astype(str), 2)), " "),
                        np.char.add(np.char.zfill(hour.astype(str), 2), np.char.add(":", np.char.add(
                            np.char.zfill(minute.astype(str), 2), ":00"))))
    stamp = stamp[np.searchsorted(receipt, receipt)]  # one time per receipt
    phone = (13_800_000_000 + rng.integers(0, 199_999_999, rows)).astype(str)
    style = rng.integers(0, 4, rows)
    phone = np.where(style == 1, np.char.add("+86 ", phone), np.where(style == 2, np.char.add("86-", phone), phone))
    barcode = ean13(697_543_210_000 + rng.integers(0, BARCODES, rows) * 7)
    quantity = rng.integers(1, 4, rows)
    price = rng.choice(np.array([69.0, 129.0, 259.0, 459.0, 869.0]), rows)
    bad = rng.random(rows)
    phone = np.where(bad < 0.004, np.char.add(phone.astype("<U20"), "9"), phone)
    quantity = np.where((bad >= 0.004) & (bad < 0.006), -quantity, quantity)
    barcode = np.where((bad >= 0.006) & (bad < 0.008), np.char.add(barcode.astype("<U12"), "0"), barcode)
    stamp = np.where((bad >= 0.008) & (bad < 0.009), "不详", stamp)
    amount = np.round(quantity * price * 0.95, 2)
    return pa.table({
        "门店编号": store, "门店名称": np.char.add("精准门店", store), "小票号": order_id, "交易时间": stamp,
        "会员卡号": np.char.add("JZ1", np.char.zfill((receipt % 99999).astype(str), 8)), "会员手机号": phone,
        "商品条码": barcode, "商品名称": np.full(rows, "玉肌水光润泽轻盈粉底液 #01象牙白"),
        "数量": quantity, "单价": np.char.mod("%.2f", price), "折扣": np.full(rows, "0.95"),
        "实收金额": np.char.mod("%.2f", amount), "支付方式": PAYMENTS[rng.integers(0, 5, rows)],
        "收银员": np.full(rows, "王雨(1040)"),
    })


def write_pos_file(path: str | Path, rows: int, seed: int = 7, encoding: str = "gbk") -> Path:
    """Write the synthetic export as CSV in `encoding` (transcoded in 16 MB chunks)."""
    path = Path(path)
    staging = path.with_suffix(".utf8.tmp")
    pacsv.write_csv(pos_table(rows, seed), staging)
    with open(staging, encoding="utf-8", newline="") as source, open(path, "w", encoding=encoding, newline="") as out:
        while chunk := source.read(16 << 20):
            out.write(chunk)
    staging.unlink()
    return path


def write_catalog(folder: str | Path) -> tuple[Path, Path]:
    """The stores and products the synthetic export refers to (UTF-8 CSVs for `stores`, `products`)."""
    folder = Path(folder)
    stores, products = folder / "stores.csv", folder / "products.csv"
    pacsv.write_csv(pa.table({"store_id": STORES, "name": [f"精准门店{store}" for store in STORES]}), stores)
    number = np.arange(BARCODES)
    pacsv.write_csv(pa.table({
        "product_id": np.char.add("P", np.char.zfill(number.astype(str), 5)),
        "sku": np.char.add("SKU-", np.char.zfill(number.astype(str), 5)),
        "barcode": ean13(697_543_210_000 + number * 7), "name": np.full(BARCODES, "玉肌水光润泽轻盈粉底液 #01象牙白"),
        "price": np.full(BARCODES, "259.00"),
    }), products)
    return stores, products
