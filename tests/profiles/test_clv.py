"""BG/NBD and Gamma-Gamma against the published CDNOW benchmark.

The raw CDNOW sample (2,357 customers' CD purchases, 1997-01 to 1998-06; see
tests/profiles/data/README.md) is loaded as orders, its RFM summary is computed by the
engine's SQL (the same query the scores stage runs) for the 39-week calibration period,
and the fitted parameters are compared with the published ones:

- BG/NBD (Fader, Hardie & Lee 2005): r = 0.243, alpha = 4.414, a = 0.793, b = 2.426,
  log-likelihood -9582.4;
- Gamma-Gamma (Fader & Hardie 2013): p = 6.25, q = 3.74, gamma = 15.44.

Predictions are compared with values from Hardie's BG/NBD Excel workbook (as quoted by
the lifetimes test suite) and with lifetimes 0.11.3 run on the same inputs.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from jingzhun.engine import Engine
from jingzhun.profiles import clv
from jingzhun.profiles.scores_features import rfm_summary_sql
from jingzhun.schema import tables

CDNOW = Path(__file__).parent / "data" / "cdnow_sample.txt"
CALIBRATION_END = dt.datetime(1997, 9, 30, tzinfo=dt.UTC)  # end of week 39
PUBLISHED = clv.BetaGeoParams(r=0.243, alpha=4.414, a=0.793, b=2.426, log_likelihood=-9582.4)
PUBLISHED_GG = clv.GammaGammaParams(p=6.25, q=3.74, gamma=15.44, log_likelihood=float("nan"))


def load_cdnow(engine: Engine) -> None:
    """CDNOW purchases as orders of active persons, each owned through record_persons."""
    raw = pd.read_csv(CDNOW, sep=r"\s+", header=None, names=["master_id", "customer", "day", "cds", "value"],
                      dtype={"day": str})
    for definition in (tables.ORDERS, tables.PERSONS, tables.RECORD_PERSONS):
        engine.create_table(definition.name, definition.columns)
    ids = [f"cd{i}" for i in range(len(raw))]
    customers = raw["customer"].astype(str)
    engine.write_table("orders", pa.table({
        "order_id": ids,
        "placed_at": pa.array(pd.to_datetime(raw["day"]).dt.tz_localize("UTC"), pa.timestamp("us", tz="UTC")),
        "status": ["completed"] * len(raw), "currency": ["USD"] * len(raw),
        "net_amount": pa.array([Decimal(f"{v:.2f}") for v in raw["value"]], pa.decimal128(18, 2)),
    }))
    engine.write_table("record_persons", pa.table({
        "record_kind": ["order"] * len(raw), "record_id": ids, "person_id": customers.tolist()}))
    people = sorted(customers.unique())
    engine.write_table("persons", pa.table({
        "person_id": people, "status": ["active"] * len(people),
        "created_at": pa.array([CALIBRATION_END] * len(people), pa.timestamp("us", tz="UTC")),
    }))


@pytest.fixture
def cdnow(engine: Engine) -> pd.DataFrame:
    """The CDNOW calibration-period summary computed by the engine, in weeks."""
    load_cdnow(engine)
    summary = engine.query(rfm_summary_sql(CALIBRATION_END, "UTC")).to_pandas()
    summary["customer"] = summary["person_id"].astype(int)
    summary = summary.sort_values("customer").reset_index(drop=True)
    summary["t_x"], summary["T"] = summary["recency_days"] / 7, summary["t_days"] / 7
    return summary


def test_engine_summary_matches_the_published_cdnow_summary(cdnow: pd.DataFrame) -> None:
    # Totals and rows of Fader & Hardie's calibration summary (x, t_x, T, mean repeat spend).
    assert len(cdnow) == 2357
    assert (int(cdnow["frequency"].sum()), int((cdnow["frequency"] == 0).sum())) == (2457, 1411)
    first = cdnow.iloc[0]
    assert first["frequency"] == 2  # 1997-01-01 (first), 01-18 ($29.73), 08-02 ($14.96)
    assert [first["t_x"], first["T"], first["monetary"]] == pytest.approx([30.43, 38.86, 22.345], abs=0.005)


def test_bgnbd_fit_reproduces_the_published_cdnow_estimates(cdnow: pd.DataFrame, record_property) -> None:
    fitted = clv.fit_bgnbd(cdnow["frequency"], cdnow["t_x"], cdnow["T"])
    got = np.array([fitted.r, fitted.alpha, fitted.a, fitted.b])
    want = np.array([PUBLISHED.r, PUBLISHED.alpha, PUBLISHED.a, PUBLISHED.b])
    line = (f"BG/NBD on CDNOW: r={fitted.r:.4f} alpha={fitted.alpha:.4f} a={fitted.a:.4f} b={fitted.b:.4f} "
            f"LL={fitted.log_likelihood:.2f} (published 0.243 4.414 0.793 2.426, LL -9582.4)")
    print(f"\n{line}")  # noqa: T201
    record_property("bgnbd_cdnow", line)
    np.testing.assert_allclose(got, want, rtol=2e-3)
    assert fitted.log_likelihood == pytest.approx(PUBLISHED.log_likelihood, abs=0.1)
    # Hardie's workbook: E[X(t)] for a new customer, and E[Y(39) | x=2, t_x=30.43, T=38.86] = 1.226.
    times = np.array([0.1429, 1.0, 3.00, 31.8571, 32.00, 78.00])
    np.testing.assert_allclose(clv.population_expected_purchases(fitted, times),
                               [0.0078, 0.0532, 0.1506, 1.0405, 1.0437, 1.8576], atol=1e-3)
    assert clv.expected_purchases(fitted, 39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=1e-3)


def test_gamma_gamma_fit_reproduces_the_published_cdnow_estimates(cdnow: pd.DataFrame, record_property) -> None:
    fitted = clv.fit_gamma_gamma(cdnow["frequency"], cdnow["monetary"].fillna(0.0))
    line = (f"Gamma-Gamma on CDNOW: p={fitted.p:.4f} q={fitted.q:.4f} gamma={fitted.gamma:.4f} "
            "(published 6.25 3.74 15.44)")
    print(f"\n{line}")  # noqa: T201
    record_property("gamma_gamma_cdnow", line)
    np.testing.assert_allclose([fitted.p, fitted.q, fitted.gamma],
                               [PUBLISHED_GG.p, PUBLISHED_GG.q, PUBLISHED_GG.gamma], rtol=2e-3)


# Customers (x, t_x, T) and, with the published parameters, what lifetimes 0.11.3 returns
# (BetaGeoFitter / GammaGammaFitter with params_ set; run once, numbers kept here).
X = np.array([0.0, 2.0, 5.0, 26.0])
T_X = np.array([0.0, 30.43, 10.0, 30.86])
AGE = np.array([38.86, 38.86, 38.86, 31.0])


def test_predictions_match_lifetimes_on_the_same_inputs() -> None:
    np.testing.assert_allclose(clv.probability_alive(PUBLISHED, X, T_X, AGE),
                               [1.0, 0.72657857, 0.02480437, 0.96891565], rtol=1e-6)
    np.testing.assert_allclose(clv.expected_purchases(PUBLISHED, 39, X, T_X, AGE),
                               [0.19509805, 1.22602817, 0.09444008, 20.74972614], rtol=1e-6)
    np.testing.assert_allclose(clv.expected_purchases(PUBLISHED, 52, X, T_X, AGE),
                               [0.25207302, 1.55872081, 0.11911778, 25.75819594], rtol=1e-6)
    spend = clv.expected_spend(PUBLISHED_GG, np.array([1, 2, 5, 26.0]), np.array([20.0, 22.35, 35.5, 40.0]))
    np.testing.assert_allclose(spend, [24.63848721, 24.66371391, 35.47734628, 39.92072137], rtol=1e-6)
    population_mean = clv.expected_spend(PUBLISHED_GG, np.array([0.0]), np.array([np.nan]))
    assert population_mean[0] == pytest.approx(6.25 * 15.44 / 2.74)


@pytest.mark.parametrize("model", ["bgnbd", "gamma_gamma"])
def test_analytic_gradients_match_finite_differences(model: str) -> None:
    """The fits follow the analytic gradients, so they must be right everywhere the data goes."""
    rng = np.random.default_rng(3)
    x = np.concatenate([np.zeros(50), rng.integers(1, 30, 150)]).astype(float)
    big_t = rng.uniform(5, 80, 200)
    t_x = np.where(x > 0, big_t * rng.uniform(0.05, 1, 200), 0.0)
    if model == "bgnbd":
        terms, params, columns = clv._bgnbd_terms, np.array([0.4, 6.0, 0.8, 2.5]), (x, t_x, big_t)
    else:
        terms, params, columns = clv._gamma_gamma_terms, np.array([6.0, 3.7, 15.0]), (x[x > 0], rng.uniform(5, 90, 150))
    _, grad = terms(params, *columns)
    for i in range(len(params)):
        step = np.zeros_like(params)
        step[i] = 1e-6 * params[i]
        numeric = (terms(params + step, *columns)[0] - terms(params - step, *columns)[0]) / (2 * step[i])
        np.testing.assert_allclose(grad[i], numeric, rtol=1e-5, atol=1e-7)


def test_fits_over_distinct_rows_equal_fits_over_every_customer(cdnow: pd.DataFrame) -> None:
    """Weighting distinct summaries by their count is the same likelihood as one row each."""
    fitted = clv.fit_bgnbd(cdnow["frequency"], cdnow["t_x"], cdnow["T"])
    params = np.array([fitted.r, fitted.alpha, fitted.a, fitted.b])
    every = clv.bgnbd_log_likelihood(params, *(cdnow[c].to_numpy(dtype=float) for c in ("frequency", "t_x", "T")))
    assert every.sum() == pytest.approx(fitted.log_likelihood, rel=1e-12)


def test_too_few_repeat_buyers_is_a_clear_error() -> None:
    with pytest.raises(clv.ClvFitError) as raised:
        clv.fit_bgnbd(np.zeros(20), np.zeros(20), np.full(20, 10.0))
    assert raised.value.field == "orders" and "复购" in raised.value.message_zh
    with pytest.raises(clv.ClvFitError):
        clv.fit_gamma_gamma(np.array([1.0, 2.0]), np.array([10.0, 20.0]))
