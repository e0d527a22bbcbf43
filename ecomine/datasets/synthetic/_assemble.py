"""Stages 7 and 8 of `generate`: the canonical events frame, and the truth frames behind it."""

from __future__ import annotations

import numpy as np
import polars as pl

from ecomine.data.schema import EVENT_COLUMNS, EVENT_DTYPE, validate_events
from ecomine.datasets.synthetic._catalogue import SynthCatalogue
from ecomine.datasets.synthetic._lines import Lines
from ecomine.datasets.synthetic._params import SynthParams
from ecomine.datasets.synthetic._people import Users
from ecomine.datasets.synthetic._returns import Browsing, Returns
from ecomine.datasets.synthetic._vocab import _BULK_HIGH, _BULK_LOW, _BULK_P


def events_frame(cat: SynthCatalogue, users: Users, lines: Lines, ret: Returns, browse: Browsing,
                 item_ids: np.ndarray, user_ids: np.ndarray) -> pl.DataFrame:
    """Purchases, returns, views/carts and abandoned sessions as canonical events (+ country, category)."""
    l_user, items_seq, l_ts, qty, l_price, o_id, l_order = (
        lines.l_user, lines.items_seq, lines.l_ts, lines.qty, lines.l_price, lines.o_id, lines.l_order)
    ret_idx, r_ts, r_qty, ro_id, ret_inv = ret.ret_idx, ret.r_ts, ret.r_qty, ret.ro_id, ret.ret_inv
    b_idx, cart_b, ab_user, ab_item, ab_ts, ab_cart = (
        browse.b_idx, browse.cart_b, browse.ab_user, browse.ab_item, browse.ab_ts, browse.ab_cart)
    base_price, titles, cat_names, item_cat = cat.base_price, cat.titles, cat.cat_names, cat.item_cat
    country_names, country = users.country_names, users.country
    parts = [
        # purchases
        dict(u=l_user, i=items_seq, ts=l_ts, ev="purchase", q=qty, pr=l_price, oid=o_id[l_order]),
        # returns
        dict(u=l_user[ret_idx], i=items_seq[ret_idx], ts=r_ts[ret_idx],
             ev="return", q=r_qty[ret_idx], pr=l_price[ret_idx], oid=ro_id[ret_inv]),
        # views / carts before browsed orders
        dict(u=l_user[b_idx], i=items_seq[b_idx], ts=l_ts[b_idx] - 900_000_000, ev="view",
             q=np.ones(b_idx.size, np.int64), pr=l_price[b_idx], oid=None),
        dict(u=l_user[b_idx][cart_b], i=items_seq[b_idx][cart_b], ts=l_ts[b_idx][cart_b] - 450_000_000,
             ev="cart", q=qty[b_idx][cart_b], pr=l_price[b_idx][cart_b], oid=None),
        # abandoned sessions
        dict(u=ab_user, i=ab_item, ts=ab_ts, ev="view", q=np.ones(ab_user.size, np.int64),
             pr=base_price[ab_item], oid=None),
        dict(u=ab_user[ab_cart], i=ab_item[ab_cart], ts=ab_ts[ab_cart] + 20_000_000, ev="cart",
             q=np.ones(int(ab_cart.sum()), np.int64), pr=base_price[ab_item[ab_cart]], oid=None),
    ]
    cols = {key: np.concatenate([np.asarray(part[key]) for part in parts]) for key in ("u", "i", "ts", "q", "pr")}
    kind = np.concatenate([np.full(len(part["u"]), part["ev"], dtype=object) for part in parts])
    oid = np.concatenate([part["oid"] if part["oid"] is not None else np.full(len(part["u"]), None, dtype=object)
                          for part in parts])
    order = np.lexsort((kind.astype(str), cols["i"], cols["u"], cols["ts"]))
    u, i = cols["u"][order].astype(np.int64), cols["i"][order].astype(np.int64)
    ev = pl.DataFrame({
        "user_id": pl.Series(user_ids[u], dtype=pl.String),
        "item_id": pl.Series(item_ids[i], dtype=pl.String),
        "ts": pl.Series(cols["ts"][order].astype(np.int64)).cast(pl.Datetime("us", "UTC")),
        "event": pl.Series(kind[order], dtype=pl.String).cast(EVENT_DTYPE),
        "quantity": cols["q"][order].astype(np.int64),
        "price": cols["pr"][order].astype(np.float64),
        "order_id": pl.Series(oid[order].tolist(), dtype=pl.String),
        "item_text": pl.Series(np.asarray(titles, dtype=object)[i], dtype=pl.String),
        "linked_order_id": pl.Series([None] * u.size, dtype=pl.String),
        "country": pl.Series(country_names[country[u]], dtype=pl.String),
        "category": pl.Series(cat_names[item_cat[i]], dtype=pl.String),
    })
    return validate_events(ev.select([*EVENT_COLUMNS, "country", "category"]))


def truth_frames(p: SynthParams, day_dates: np.ndarray, season: np.ndarray, cat: SynthCatalogue, users: Users,
                 lines: Lines, ret: Returns, item_ids: np.ndarray, user_ids: np.ndarray) -> dict[str, pl.DataFrame]:
    """SynthLog's truth frames by field name: interests, expected units, return propensity, items, users, returns."""
    n_u, n_i, n_c, n_d = p.users, p.items, p.n_categories, p.days
    w0, w1, activity, lines_mean, pack, qty_mu = (
        users.w0, users.w1, users.activity, users.lines_mean, users.pack, users.qty_mu)
    country_names, country, wholesale = users.country_names, users.country, users.wholesale
    cat_names, fresh_p, avail, item_cat, qty_factor = cat.cat_names, cat.fresh_p, cat.avail, cat.item_cat, cat.qty_factor
    titles, base_price, pop, collection, successor = cat.titles, cat.base_price, cat.pop, cat.collection, cat.successor
    avail_from, avail_to = cat.avail_from, cat.avail_to
    o_id, l_order, items_seq, l_user, bulk = lines.o_id, lines.l_order, lines.items_seq, lines.l_user, lines.bulk
    prob, f_price, f_cat, f_new, f_country, observed = ret.prob, ret.f_price, ret.f_cat, ret.f_new, ret.f_country, ret.observed
    ret_idx, ret_inv, ro_id, r_qty = ret.ret_idx, ret.ret_inv, ret.ro_id, ret.r_qty
    d_first, d_last = day_dates[0], day_dates[-1]
    user_interests = pl.concat([
        pl.DataFrame({
            "user_id": np.repeat(user_ids, n_c).tolist(),
            "category": np.tile(cat_names, n_u).tolist(),
            "phase": [phase] * (n_u * n_c),
            "date": [d] * (n_u * n_c),
            "weight": w.reshape(-1),
        }, schema={"user_id": pl.String, "category": pl.String, "phase": pl.String,
                   "date": pl.Date, "weight": pl.Float64})
        for phase, d, w in (("start", d_first, w0), ("end", d_last, w1))
    ])
    g1 = activity / 365.0 * lines_mean * pack * (1.0 + _BULK_P * (0.5 * (_BULK_LOW + _BULK_HIGH) - 1.0))
    rates = _expected_units(p, season, w0, w1, fresh_p, avail, item_cat, activity / 365.0,
                            g1, g1 * (qty_mu - 1.0), qty_factor)  # (days, items)
    dates = pl.date_range(day_dates[0], day_dates[-1], eager=True)
    item_rates = pl.DataFrame({
        "item_id": pl.Series(np.repeat(item_ids, n_d), dtype=pl.String),
        "date": dates.gather(np.tile(np.arange(n_d), n_i)),
        "expected_units": rates.T.reshape(-1),
    })
    return_propensity = pl.DataFrame({
        "order_id": o_id[l_order].tolist(),
        "item_id": item_ids[items_seq].tolist(),
        "user_id": user_ids[l_user].tolist(),
        "probability": prob,
        "high_price": f_price, "bulk": bulk, "risky_category": f_cat,
        "new_user": f_new, "risky_country": f_country,
        "returned": observed,
    }, schema_overrides={"order_id": pl.String, "item_id": pl.String, "user_id": pl.String})
    items_truth = pl.DataFrame({
        "item_id": item_ids.tolist(),
        "category": cat_names[item_cat].tolist(),
        "title": titles,
        "base_price": base_price,
        "popularity": pop,
        "collection": collection,
        "successor_item_id": item_ids[successor].tolist(),
        "on_sale_from": dates.gather(np.clip(avail_from, 0, n_d - 1)).to_numpy(),
        "on_sale_to": dates.gather(np.clip(avail_to - 1, 0, n_d - 1)).to_numpy(),
    }, schema_overrides={"item_id": pl.String, "category": pl.String, "successor_item_id": pl.String}
    ).with_columns(  # null: on sale before the start / after the end of the log
        pl.when(pl.Series(avail_from > 0)).then(pl.col("on_sale_from")).alias("on_sale_from"),
        pl.when(pl.Series(avail_to < n_d)).then(pl.col("on_sale_to")).alias("on_sale_to"),
    )
    users_truth = pl.DataFrame({
        "user_id": user_ids.tolist(),
        "country": country_names[country].tolist(),
        "wholesale": wholesale,
        "orders_per_year": activity,
    }, schema_overrides={"user_id": pl.String, "country": pl.String})
    returns_truth = pl.DataFrame({
        "order_id": ro_id[ret_inv].tolist(),
        "item_id": item_ids[items_seq[ret_idx]].tolist(),
        "user_id": user_ids[l_user[ret_idx]].tolist(),
        "quantity": r_qty[ret_idx].astype(np.int64),
        "purchase_order_id": o_id[l_order[ret_idx]].tolist(),
    }, schema={"order_id": pl.String, "item_id": pl.String, "user_id": pl.String,
               "quantity": pl.Int64, "purchase_order_id": pl.String}).sort("order_id", "item_id")
    return dict(user_interests=user_interests, item_rates=item_rates, return_propensity=return_propensity,
                items=items_truth, users=users_truth, returns_truth=returns_truth)


def _expected_units(
    p: SynthParams, season: np.ndarray, w0: np.ndarray, w1: np.ndarray, fresh_p: np.ndarray,
    avail: np.ndarray, item_cat: np.ndarray, lam: np.ndarray, g1: np.ndarray, g2: np.ndarray,
    qty_factor: np.ndarray, chunk: int = 512,
) -> np.ndarray:
    """Expected gross purchased units per (day, item), following the line mechanisms.

    For user u on day d a fresh line is item i with F = w_u(d)[cat i] * fresh_p[d, i];
    a successor keeps the previous line's distribution (collections share popularity
    and sale window); a repeat draws from the user's earlier lines, kept as the
    season-weighted sum H (items still on sale, else a fresh draw). With ph = P(user
    ordered before d), rho = r / (1 - s) and sigma = share of H on sale, a line is
    m = F (1 - ph rho sigma) + ph rho H*on / sum(season before d), and the day's units
    are season(d) * sum_u m_u (g1_u + g2_u * qty_factor). Cost ~ users * items * days.
    einsum, not `@`: BLAS threads spin badly on a busy 2-core machine for these small products.
    """
    n_d, n_i = fresh_p.shape
    rho = p.repeat_prob / (1.0 - p.successor_prob) if p.successor_prob < 1 else 0.0
    rates = np.zeros((n_d, n_i))
    for lo in range(0, w0.shape[0], chunk):
        sl = slice(lo, lo + chunk)
        cw0, cdw, lam_c = w0[sl], w1[sl] - w0[sl], lam[sl]
        g = np.stack([g1[sl], g2[sl]], axis=1)  # (users, 2)
        # H: season-weighted sum of m over earlier days, kept only for items on sale
        # (a sale window is one interval: an item that left the shop never comes back)
        hist = np.zeros((cw0.shape[0], n_i))
        seen = 0.0
        on_before = np.zeros(n_i, dtype=bool)
        for d in range(n_d):
            if season[d] <= 0:
                continue
            ended = on_before & ~avail[d]
            if ended.any():
                hist[:, ended] = 0.0
            on_before = avail[d]
            w = cw0 + ((d + 0.5) / n_d) * cdw  # (users, categories)
            if seen > 0:
                eta = (1.0 - np.exp(-lam_c * seen)) * rho / seen  # weight of H (on sale) in m
                kappa = 1.0 - eta * hist.sum(axis=1)  # weight of F in m
            else:
                eta, kappa = np.zeros_like(lam_c), np.ones_like(lam_c)
            # units: fresh part through categories, repeat part through H
            fresh_k = np.einsum("uc,u,uk->ck", w, kappa, g)  # (categories, 2)
            units = fresh_p[d] * (fresh_k[item_cat, 0] + fresh_k[item_cat, 1] * qty_factor)
            if seen > 0:
                units += np.einsum("u,ui->i", g[:, 0] * eta, hist)
                units += np.einsum("u,ui->i", g[:, 1] * eta, hist) * qty_factor
                hist *= (1.0 + season[d] * eta)[:, None]  # H += season * m, repeat part
            rates[d] += season[d] * units
            hist += ((season[d] * kappa)[:, None] * w)[:, item_cat] * fresh_p[d]  # fresh part
            seen += season[d]
    return rates
