"""Chinese geography and stores for the demo retailer.

The city weights roughly follow where a mid-priced omnichannel beauty-and-lifestyle
brand sells: top-tier cities dominate, stores exist only in some of them, so
offline shoppers cluster around stores while online buyers spread nationwide.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa

from jingzhun.demo.vectors import stream_rng

# (province, city, weight, stores): stores = how many of our shops the city has.
CITIES: tuple[tuple[str, str, float, int], ...] = (
    ("上海市", "上海市", 9.0, 4),
    ("北京市", "北京市", 8.5, 3),
    ("广东省", "广州市", 6.5, 2),
    ("广东省", "深圳市", 6.5, 2),
    ("浙江省", "杭州市", 5.0, 2),
    ("四川省", "成都市", 5.0, 2),
    ("湖北省", "武汉市", 4.0, 1),
    ("江苏省", "南京市", 4.0, 1),
    ("江苏省", "苏州市", 3.5, 1),
    ("重庆市", "重庆市", 4.0, 1),
    ("陕西省", "西安市", 3.2, 1),
    ("天津市", "天津市", 3.0, 1),
    ("湖南省", "长沙市", 3.0, 1),
    ("河南省", "郑州市", 2.8, 1),
    ("山东省", "青岛市", 2.5, 1),
    ("福建省", "厦门市", 2.0, 1),
    ("辽宁省", "沈阳市", 2.0, 1),
    ("云南省", "昆明市", 1.8, 1),
    ("山东省", "济南市", 2.0, 0),
    ("浙江省", "宁波市", 2.0, 0),
    ("福建省", "福州市", 1.6, 0),
    ("安徽省", "合肥市", 2.0, 0),
    ("江西省", "南昌市", 1.5, 0),
    ("广西壮族自治区", "南宁市", 1.4, 0),
    ("贵州省", "贵阳市", 1.2, 0),
    ("黑龙江省", "哈尔滨市", 1.5, 0),
    ("吉林省", "长春市", 1.2, 0),
    ("河北省", "石家庄市", 1.5, 0),
    ("山西省", "太原市", 1.1, 0),
    ("内蒙古自治区", "呼和浩特市", 0.7, 0),
    ("新疆维吾尔自治区", "乌鲁木齐市", 0.7, 0),
    ("甘肃省", "兰州市", 0.7, 0),
    ("海南省", "海口市", 0.6, 0),
    ("广东省", "东莞市", 2.0, 0),
    ("广东省", "佛山市", 1.8, 0),
    ("江苏省", "无锡市", 1.6, 0),
)

_MALLS = ("万象城", "大悦城", "银泰", "万达广场", "太古里", "来福士", "IFS", "恒隆广场",
          "K11", "龙湖天街", "印象城", "凯德广场")


def city_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Provinces, cities and normalized weights as parallel numpy arrays."""
    provinces = np.array([c[0] for c in CITIES], dtype=object)
    cities = np.array([c[1] for c in CITIES], dtype=object)
    weights = np.array([c[2] for c in CITIES], dtype=float)
    return provinces, cities, weights / weights.sum()


def build_stores(seed: int) -> pa.Table:
    """The retailer's 28 stores: store_id, name, province, city, opened_on.

    Store ids look like a POS system's ("SH001"); names follow the usual
    "品牌 + 城市 + 商场 + 店" pattern. Opening dates fall in 2016-2023, before any
    default history starts.
    """
    rng = stream_rng(seed, "stores")
    rows: list[tuple[str, str, str, str, date]] = []
    for province, city, _w, count in CITIES:
        for k in range(count):
            mall = _MALLS[int(rng.integers(len(_MALLS)))]
            code = _city_code(city)
            opened = date(2016, 1, 1).toordinal() + int(rng.integers(0, 8 * 365))
            rows.append((f"{code}{k + 1:03d}", f"精准{city.removesuffix('市')}{mall}店",
                         province, city, date.fromordinal(opened)))
    cols = list(zip(*rows, strict=True))
    return pa.table({
        "store_id": pa.array(cols[0]), "name": pa.array(cols[1]),
        "province": pa.array(cols[2]), "city": pa.array(cols[3]),
        "opened_on": pa.array(cols[4], type=pa.date32()),
    })


_CODES = {"上海市": "SH", "北京市": "BJ", "广州市": "GZ", "深圳市": "SZ", "杭州市": "HZ",
          "成都市": "CD", "武汉市": "WH", "南京市": "NJ", "苏州市": "SU", "重庆市": "CQ",
          "西安市": "XA", "天津市": "TJ", "长沙市": "CS", "郑州市": "ZZ", "青岛市": "QD",
          "厦门市": "XM", "沈阳市": "SY", "昆明市": "KM"}


def _city_code(city: str) -> str:
    return _CODES[city]
