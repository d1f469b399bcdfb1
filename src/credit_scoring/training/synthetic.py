"""Seeded generator of Home-Credit-shaped tables, for running the template without real data.

Writes ``application_train.csv`` and ``bureau.csv`` (a subset of the columns of the Kaggle
"Home Credit Default Risk" files, same names and codes) and ``true_default_probability.csv``.

The latent model (documented so model quality can be judged against the best possible):
each applicant's log-odds of default is a fixed linear function of what the lender *can*
observe (see ``LATENT_WEIGHTS`` and ``_latent_logit``): the external scores (a missing score
contributes nothing), age, years employed, credit/income and annuity/income, gender,
education, income type, region rating, social-circle defaults, and the bureau history
(overdue amount, days overdue, number of active credits). The intercept is solved so the mean
probability equals ``default_rate``; TARGET ~ Bernoulli(p). So the true p of every row is
known and the oracle AUC is computable; p is written to a separate file, never a feature.

Then the mess that real tables have is added: exact duplicate rows, a duplicated column
(OBS_60 = OBS_30), income outliers, the DAYS_EMPLOYED = 365243 sentinel for pensioners and
the unemployed, heavy missingness (EXT_SOURCE_1 ~56%, COMMONAREA_AVG ~70%), a constant
column (FLAG_MOBIL), an ID-like column (APPLICATION_REF) and a few rows that break the data
contract. ``drift: true`` produces a shifted population (income inflation, lower
EXT_SOURCE_3, more revolving loans, a new occupation that the contract does not know) and
a changed risk relation (``DRIFT_WEIGHTS``: the external score 3 lost most of its meaning,
revolving loans and high annuities default more), so a model trained before the drift ranks
the new population worse than one retrained on it: what the monitoring loop must catch.

    credit-scoring generate-data                     # conf/base/parameters_synthetic.yml
    credit-scoring generate-data --n-applications 307511 --output-dir data/01_raw
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from credit_scoring.config.synthetic import SyntheticParams

logger = logging.getLogger(__name__)

PARAMS_FILE = Path("conf/base/parameters_synthetic.yml")
DAYS_EMPLOYED_SENTINEL = 365_243

LATENT_WEIGHTS: dict[str, float] = {
    "ext_source_1": -1.4,  # per unit of (score - 0.5) / 0.2
    "ext_source_2": -0.75,
    "ext_source_3": -0.9,
    "age_decades_below_45": 0.25,
    "years_employed": -0.035,
    "log_credit_income": 0.25,
    "annuity_income": 1.5,
    "male": 0.35,
    "region_rating_above_2": 0.3,
    "def_30_social_circle": 0.25,
    "own_car": -0.15,
    "log_bureau_overdue": 0.18,
    "bureau_days_overdue_flag": 0.6,
    "bureau_active_credits": 0.08,
    "no_bureau_history": 0.2,
}
# The drifted world (``drift: true``): the weights that changed (concept drift).
DRIFT_WEIGHTS: dict[str, float] = {
    "ext_source_3": -0.15,
    "ext_source_2": -1.3,
    "annuity_income": 5.0,
    "revolving_loan": 1.0,
}
EDUCATION_EFFECT = {
    "Secondary / secondary special": 0.15,
    "Higher education": -0.35,
    "Incomplete higher": 0.0,
    "Lower secondary": 0.45,
    "Academic degree": -0.6,
}
INCOME_TYPE_EFFECT = {
    "Working": 0.1,
    "Commercial associate": 0.0,
    "Pensioner": -0.25,
    "State servant": -0.25,
    "Unemployed": 0.9,
    "Student": 0.0,
    "Businessman": -0.3,
    "Maternity leave": 0.6,
}


def _choice(rng: np.random.Generator, options: dict[str, float], n: int) -> np.ndarray:
    names = list(options)
    probs = np.array(list(options.values()), dtype=float)
    return rng.choice(np.array(names, dtype=object), size=n, p=probs / probs.sum())


def _masked(rng: np.random.Generator, values: np.ndarray, missing_rate: float) -> np.ndarray:
    out = values.astype(float).copy()
    out[rng.random(len(out)) < missing_rate] = np.nan
    return out


def _applicants(rng: np.random.Generator, n: int, drift: bool) -> pd.DataFrame:
    age_days = rng.uniform(21 * 365.25, 69 * 365.25, n)
    income_type = _choice(
        rng,
        {
            "Working": 0.516,
            "Commercial associate": 0.233,
            "Pensioner": 0.18,
            "State servant": 0.0706,
            "Unemployed": 0.0001,
            "Student": 0.0001,
            "Businessman": 0.0001,
            "Maternity leave": 0.0001,
        },
        n,
    )
    employed_days = np.minimum(rng.gamma(1.6, 1400.0, n), age_days - 18 * 365.25)
    no_job = np.isin(income_type, ["Pensioner", "Unemployed"])
    days_employed = np.where(no_job, DAYS_EMPLOYED_SENTINEL, -np.maximum(employed_days, 1).round())
    income = np.round(np.exp(rng.normal(11.95, 0.5, n)) / 4500) * 4500
    if drift:
        income = income * 1.25
    credit = np.round(income * np.exp(rng.normal(1.1, 0.6, n)) / 1000) * 1000 + 45000
    contract = _choice(
        rng, {"Cash loans": 0.905 - 0.15 * drift, "Revolving loans": 0.095 + 0.15 * drift}, n
    )
    annuity = credit * np.where(contract == "Cash loans", rng.uniform(0.03, 0.09, n), 0.05)
    goods = np.where(contract == "Cash loans", credit * rng.uniform(0.8, 1.0, n), np.nan)
    has_car = rng.random(n) < 0.34
    children = rng.choice([0, 1, 2, 3, 4], size=n, p=[0.70, 0.20, 0.087, 0.012, 0.001])
    family = _choice(
        rng,
        {
            "Married": 0.639,
            "Single / not married": 0.148,
            "Civil marriage": 0.097,
            "Separated": 0.064,
            "Widow": 0.052,
        },
        n,
    )
    occupations = {
        "Laborers": 0.26,
        "Sales staff": 0.152,
        "Core staff": 0.13,
        "Managers": 0.10,
        "Drivers": 0.088,
        "High skill tech staff": 0.054,
        "Accountants": 0.046,
        "Medicine staff": 0.04,
        "Security staff": 0.032,
        "Cooking staff": 0.028,
        "Cleaning staff": 0.022,
        "Private service staff": 0.013,
        "Low-skill Laborers": 0.01,
        "Waiters/barmen staff": 0.006,
        "Secretaries": 0.006,
        "Realty agents": 0.003,
        "HR staff": 0.002,
        "IT staff": 0.002,
    }
    if drift:
        # ~2% of the rows: the API refuses them (422) and ingestion quarantines them, below
        # data_ingestion.max_invalid_fraction, until the contract learns the new category
        occupations["Gig economy workers"] = 0.03
    occupation = _choice(rng, occupations, n)
    occupation[(rng.random(n) < 0.31) | no_job] = None
    ext3_shift = -0.08 if drift else 0.0
    obs_30 = rng.poisson(1.4, n).astype(float)
    return pd.DataFrame(
        {
            "NAME_CONTRACT_TYPE": contract,
            "CODE_GENDER": _choice(rng, {"F": 0.658, "M": 0.342}, n),
            "FLAG_OWN_CAR": np.where(has_car, "Y", "N"),
            "FLAG_OWN_REALTY": np.where(rng.random(n) < 0.69, "Y", "N"),
            "CNT_CHILDREN": children,
            "AMT_INCOME_TOTAL": income,
            "AMT_CREDIT": credit,
            "AMT_ANNUITY": _masked(rng, np.round(annuity, 1), 0.00004),
            "AMT_GOODS_PRICE": np.round(goods, -3),
            "NAME_INCOME_TYPE": income_type,
            "NAME_EDUCATION_TYPE": _choice(
                rng,
                {
                    "Secondary / secondary special": 0.71,
                    "Higher education": 0.243,
                    "Incomplete higher": 0.033,
                    "Lower secondary": 0.012,
                    "Academic degree": 0.002,
                },
                n,
            ),
            "NAME_FAMILY_STATUS": family,
            "NAME_HOUSING_TYPE": _choice(
                rng,
                {
                    "House / apartment": 0.887,
                    "With parents": 0.048,
                    "Municipal apartment": 0.036,
                    "Rented apartment": 0.016,
                    "Office apartment": 0.009,
                    "Co-op apartment": 0.004,
                },
                n,
            ),
            "REGION_POPULATION_RELATIVE": np.round(rng.beta(2.0, 90.0, n), 6),
            "DAYS_BIRTH": -np.round(age_days).astype(int),
            "DAYS_EMPLOYED": days_employed.astype(int),
            "DAYS_REGISTRATION": -np.round(rng.uniform(0, 0.6, n) * age_days),
            "DAYS_ID_PUBLISH": -np.round(rng.uniform(0, 7200, n)).astype(int),
            "OWN_CAR_AGE": np.where(has_car, rng.integers(0, 30, n), np.nan),
            "FLAG_MOBIL": np.ones(n, dtype=int),
            "OCCUPATION_TYPE": occupation,
            "CNT_FAM_MEMBERS": (
                children + 1 + np.isin(family, ["Married", "Civil marriage"])
            ).astype(float),
            "REGION_RATING_CLIENT": rng.choice([1, 2, 3], size=n, p=[0.105, 0.738, 0.157]),
            "EXT_SOURCE_1": _masked(rng, rng.beta(3.0, 3.0, n), 0.56),
            "EXT_SOURCE_2": _masked(rng, rng.beta(4.0, 2.6, n), 0.002),
            "EXT_SOURCE_3": _masked(
                rng, np.clip(rng.beta(3.5, 2.8, n) + ext3_shift, 0.0005, 0.9), 0.2
            ),
            "OBS_30_CNT_SOCIAL_CIRCLE": obs_30,
            "DEF_30_CNT_SOCIAL_CIRCLE": np.minimum(
                rng.binomial(obs_30.astype(int), 0.08), 34
            ).astype(float),
            "OBS_60_CNT_SOCIAL_CIRCLE": obs_30,  # the duplicated column
            "COMMONAREA_AVG": _masked(rng, np.round(rng.beta(1.2, 18.0, n), 4), 0.7),
            "DAYS_LAST_PHONE_CHANGE": -np.round(rng.exponential(900, n)),
            "AMT_REQ_CREDIT_BUREAU_YEAR": _masked(rng, rng.poisson(1.9, n).astype(float), 0.135),
        }
    )


def _bureau(
    rng: np.random.Generator, ids: np.ndarray, mean_credits: float, first_id: int = 5_000_000
) -> pd.DataFrame:
    n_clients = len(ids)
    risk = rng.normal(0.0, 1.0, n_clients)  # drives overdue; seen only through the bureau rows
    counts = rng.poisson(mean_credits, n_clients) * (rng.random(n_clients) > 0.14)
    owner = np.repeat(np.arange(n_clients), counts)
    n = len(owner)
    active = _choice(rng, {"Closed": 0.629, "Active": 0.367, "Sold": 0.0038, "Bad debt": 0.0002}, n)
    is_active = active == "Active"
    days_credit = -np.round(rng.uniform(0, 2922, n))
    amount = np.round(np.exp(rng.normal(11.6, 1.2, n)), 2)
    debt = np.where(is_active, np.round(amount * rng.uniform(0.0, 1.0, n), 2), 0.0)
    overdue_prob = 1 / (1 + np.exp(-(risk[owner] * 1.6 - 4.2)))
    late = is_active & (rng.random(n) < overdue_prob)
    return pd.DataFrame(
        {
            "SK_ID_CURR": ids[owner],
            "SK_ID_BUREAU": first_id + np.arange(n),
            "CREDIT_ACTIVE": active,
            "CREDIT_CURRENCY": _choice(
                rng, {"currency 1": 0.9992, "currency 2": 0.0007, "currency 3": 0.0001}, n
            ),
            "DAYS_CREDIT": days_credit,
            "CREDIT_DAY_OVERDUE": np.where(late, rng.integers(1, 120, n), 0),
            "DAYS_CREDIT_ENDDATE": _masked(
                rng, days_credit + rng.uniform(90, 3650, n).round(), 0.06
            ),
            "AMT_CREDIT_MAX_OVERDUE": _masked(
                rng, np.where(late, amount * rng.uniform(0, 0.3, n), 0.0).round(2), 0.65
            ),
            "CNT_CREDIT_PROLONG": rng.choice([0, 1, 2], size=n, p=[0.994, 0.005, 0.001]),
            "AMT_CREDIT_SUM": amount,
            "AMT_CREDIT_SUM_DEBT": _masked(rng, debt, 0.15),
            "AMT_CREDIT_SUM_OVERDUE": np.where(
                late, np.round(debt * rng.uniform(0.01, 0.5, n), 2), 0.0
            ),
            "CREDIT_TYPE": _choice(
                rng,
                {
                    "Consumer credit": 0.729,
                    "Credit card": 0.234,
                    "Car loan": 0.016,
                    "Mortgage": 0.011,
                    "Microloan": 0.007,
                    "Loan for business development": 0.003,
                },
                n,
            ),
        }
    )


def _bureau_signals(bureau: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    by_client = bureau.assign(is_active=bureau["CREDIT_ACTIVE"].eq("Active").astype(float)).groupby(
        "SK_ID_CURR"
    )
    signals = pd.DataFrame(
        {
            "overdue_sum": by_client["AMT_CREDIT_SUM_OVERDUE"].sum(),
            "days_overdue_max": by_client["CREDIT_DAY_OVERDUE"].max(),
            "active_count": by_client["is_active"].sum(),
        }
    )
    return signals.reindex(ids)


def _latent_logit(apps: pd.DataFrame, signals: pd.DataFrame, drift: bool = False) -> np.ndarray:
    """Log-odds of default without intercept, from observable columns only."""
    w = {**LATENT_WEIGHTS, **DRIFT_WEIGHTS} if drift else {**LATENT_WEIGHTS, "revolving_loan": 0.0}
    logit = np.zeros(len(apps))
    for k in (1, 2, 3):
        z = ((apps[f"EXT_SOURCE_{k}"] - 0.5) / 0.2).fillna(0.0).to_numpy()
        logit += w[f"ext_source_{k}"] * z
    age_years = -apps["DAYS_BIRTH"].to_numpy() / 365.25
    logit += w["age_decades_below_45"] * np.clip(45 - age_years, 0, None) / 10
    employed = apps["DAYS_EMPLOYED"].to_numpy()
    years_employed = np.where(employed == DAYS_EMPLOYED_SENTINEL, 0.0, -employed / 365.25)
    logit += w["years_employed"] * np.minimum(years_employed, 30)
    logit += w["log_credit_income"] * np.log(
        (apps["AMT_CREDIT"] / apps["AMT_INCOME_TOTAL"]).to_numpy()
    )
    logit += (
        w["annuity_income"]
        * (apps["AMT_ANNUITY"] / apps["AMT_INCOME_TOTAL"]).fillna(0.0).to_numpy()
    )
    logit += w["male"] * (apps["CODE_GENDER"] == "M").to_numpy()
    logit += w["region_rating_above_2"] * (apps["REGION_RATING_CLIENT"] > 2).to_numpy()
    logit += w["def_30_social_circle"] * np.minimum(apps["DEF_30_CNT_SOCIAL_CIRCLE"].to_numpy(), 3)
    logit += w["own_car"] * (apps["FLAG_OWN_CAR"] == "Y").to_numpy()
    logit += apps["NAME_EDUCATION_TYPE"].map(EDUCATION_EFFECT).to_numpy(dtype=float)
    logit += apps["NAME_INCOME_TYPE"].map(INCOME_TYPE_EFFECT).to_numpy(dtype=float)
    has_history = signals["active_count"].notna().to_numpy()
    logit += w["log_bureau_overdue"] * np.log1p(signals["overdue_sum"].fillna(0.0).to_numpy())
    logit += w["bureau_days_overdue_flag"] * (signals["days_overdue_max"].fillna(0).to_numpy() > 30)
    logit += w["bureau_active_credits"] * np.minimum(
        signals["active_count"].fillna(0.0).to_numpy(), 10
    )
    logit += w["no_bureau_history"] * ~has_history
    logit += w["revolving_loan"] * (apps["NAME_CONTRACT_TYPE"] == "Revolving loans").to_numpy()
    return logit


def _solve_intercept(logit: np.ndarray, rate: float) -> float:
    lo, hi = -20.0, 20.0
    for _ in range(100):  # bisection: the mean probability is increasing in the intercept
        mid = (lo + hi) / 2
        if np.mean(1 / (1 + np.exp(-(logit + mid)))) < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _add_mess(
    rng: np.random.Generator, apps: pd.DataFrame, params: SyntheticParams, shuffle_seed: int
) -> pd.DataFrame:
    apps = apps.copy()
    n = len(apps)
    outliers = rng.random(n) < params.outlier_fraction
    apps.loc[outliers, "AMT_INCOME_TOTAL"] = apps.loc[outliers, "AMT_INCOME_TOTAL"] * rng.uniform(
        20, 200, outliers.sum()
    )
    apps.loc[rng.random(n) < 0.0005, "CODE_GENDER"] = "XNA"  # as in the real file
    # Rows that break the data contract, to show quarantine at work.
    bad = np.flatnonzero(rng.random(n) < params.invalid_fraction)
    kinds = rng.integers(0, 4, len(bad))
    apps["CNT_CHILDREN"] = apps["CNT_CHILDREN"].astype(int)
    for row, kind in zip(bad, kinds, strict=True):
        column, value = [
            ("AMT_CREDIT", -1000.0),
            ("CNT_CHILDREN", -1),
            ("NAME_CONTRACT_TYPE", "Payday loans"),
            ("EXT_SOURCE_2", 1.7),
        ][kind]
        apps.loc[apps.index[row], column] = value
    dup = apps.sample(frac=params.duplicate_fraction, random_state=shuffle_seed)
    return (
        pd.concat([apps, dup])
        .sample(frac=1.0, random_state=shuffle_seed + 1)
        .reset_index(drop=True)
    )


@dataclass
class _Cursor:
    """Where the next chunk starts, and the intercept the first chunk solved."""

    applications: int = 0
    bureau_rows: int = 0
    intercept: float | None = None


def _chunk(params: SyntheticParams, index: int, size: int, at: _Cursor) -> dict[str, pd.DataFrame]:
    """Applications ``at.applications`` to ``+ size``, their bureau rows and probabilities.

    The first chunk draws from ``default_rng(seed)`` and solves the intercept, so data that fit
    in one chunk are exactly what this generator always wrote; every later chunk has its own
    stream (``default_rng([seed, index])``) and reuses that intercept, so the default rate
    holds across chunks without any chunk seeing another.
    """
    rng = np.random.default_rng(params.seed if index == 0 else [params.seed, index])
    ids = 100_002 + at.applications + np.arange(size)
    apps = _applicants(rng, size, params.drift)
    bureau = _bureau(rng, ids, params.mean_bureau_credits, 5_000_000 + at.bureau_rows)
    logit = _latent_logit(apps, _bureau_signals(bureau, ids), params.drift)
    if at.intercept is None:
        at.intercept = _solve_intercept(logit, params.default_rate)
    prob = 1 / (1 + np.exp(-(logit + at.intercept)))
    apps.insert(0, "SK_ID_CURR", ids)
    apps.insert(1, "TARGET", (rng.random(size) < prob).astype(int))
    apps["APPLICATION_REF"] = rng.permutation(size) + 7_000_000 + at.applications  # carries nothing
    # Rounded: np.exp's last bits depend on the CPU's vector unit, and DVC hashes bytes.
    truth = pd.DataFrame({"SK_ID_CURR": ids, "TRUE_PROBABILITY": prob.round(10)})
    at.applications += size
    at.bureau_rows += len(bureau)
    return {
        "application_train": _add_mess(rng, apps, params, params.seed + 2 * index),
        "bureau": bureau,
        "true_default_probability": truth,
    }


def chunks(params: SyntheticParams) -> Iterator[dict[str, pd.DataFrame]]:
    """The three tables, ``params.chunk_applications`` applications at a time: memory follows
    the chunk size, not ``n_applications`` (10M applications write in the memory of 500k)."""
    at = _Cursor()
    for index, start in enumerate(range(0, params.n_applications, params.chunk_applications)):
        size = min(params.chunk_applications, params.n_applications - start)
        yield _chunk(params, index, size, at)


def generate(params: SyntheticParams) -> dict[str, pd.DataFrame]:
    """Build the three tables in memory: applications, bureau and the true probabilities."""
    parts = list(chunks(params))
    if len(parts) == 1:
        return parts[0]
    return {name: pd.concat([p[name] for p in parts], ignore_index=True) for name in parts[0]}


# The files `write` produces (what the DVC stage of the generator declares as outputs).
GENERATED_FILES = ("application_train.csv", "bureau.csv", "true_default_probability.csv")


def write(tables: dict[str, pd.DataFrame], output_dir: str | Path) -> list[Path]:
    """Write each table as ``<name>.csv`` (the Kaggle file names) and return the paths."""
    return write_chunks([tables], output_dir)[0]


def write_chunks(
    parts: Iterable[dict[str, pd.DataFrame]], output_dir: str | Path
) -> tuple[list[Path], dict[str, int]]:
    """Append each chunk's tables to ``<name>.csv``; the paths and each table's row count.

    The files are written beside their targets (``.partial``) and renamed only once the last
    chunk is in: an interrupted run leaves the previous tables in place, never half of new ones.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, int] = {}
    partial: dict[str, Path] = {}
    try:
        for part in parts:
            for name, frame in part.items():
                path = partial.setdefault(name, out / f"{name}.csv.partial")
                frame.to_csv(
                    path, index=False, mode="a" if name in rows else "w", header=name not in rows
                )
                rows[name] = rows.get(name, 0) + len(frame)
    except BaseException:
        for path in partial.values():
            path.unlink(missing_ok=True)
        raise
    paths = []
    for name, path in partial.items():
        paths.append(path.replace(out / f"{name}.csv"))
    return paths, rows


def load_params(path: Path = PARAMS_FILE, **overrides: Any) -> SyntheticParams:
    raw = yaml.safe_load(path.read_text())["synthetic"] if path.exists() else {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return SyntheticParams.model_validate(raw)


def generate_data(
    params_file: Path = PARAMS_FILE,
    n_applications: int | None = None,
    seed: int | None = None,
    output_dir: str | Path | None = None,
    drift: bool | None = None,
) -> list[Path]:
    """Generate the tables of ``params_file`` (each argument given overrides its key) and
    write them; returns the paths written."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    params = load_params(
        params_file,
        n_applications=n_applications,
        seed=seed,
        output_dir=None if output_dir is None else str(output_dir),
        drift=drift,
    )
    defaults = 0

    def counted(parts: Iterator[dict[str, pd.DataFrame]]) -> Iterator[dict[str, pd.DataFrame]]:
        nonlocal defaults
        for part in parts:
            defaults += int(part["application_train"]["TARGET"].sum())
            yield part

    paths, rows = write_chunks(counted(chunks(params)), params.output_dir)
    for path in paths:
        logger.info("wrote %s", path)
    logger.info(
        "%d application rows, %d bureau rows, default rate %.3f",
        rows["application_train"],
        rows["bureau"],
        defaults / rows["application_train"],
    )
    return paths
