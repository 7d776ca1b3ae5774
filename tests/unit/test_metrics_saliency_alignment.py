"""Saliency alignment: CC, NSS and AUC-Judd against the MIT benchmark definitions, scipy and sklearn.

The benchmark (cvzoya/saliency code_forMetrics: CC.m, NSS.m, AUC_Judd.m) brings the model map
to the fixation map's size with MATLAB ``imresize`` (bicubic by default) before every metric;
``imresize`` is checked against values worked out by hand from Keys' kernel and against PIL away
from the borders, and the whole metric on synthetic MIT-like maps (landscape 3:4 density maps
with fixation clusters outside the central square, like MIT1003's 768 x 1024 maps), on the part
of the image the model saw.
"""

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from sklearn.metrics import roc_auc_score

from clipdyn.data.formats import DatasetTables
from clipdyn.io import EmbeddingTable
from clipdyn.metrics import auc_judd, center_crop, nss, patch_similarity_map, pearson_cc, registry, resize_map
from clipdyn.metrics.saliency_alignment import (
    crop_for_resize_mode,
    human_region,
    imresize,
    model_map_on_human,
    saliency_scores,
)


def auc_judd_mit_loop(sal, fix):
    """A line-by-line port of the MIT benchmark's AUC_Judd.m (without the random jitter)."""
    S, F = sal.ravel(), fix.ravel()
    Sth = S[F > 0]
    n_fix, n_pix = len(Sth), len(S)
    allthreshes = np.sort(Sth)[::-1]
    tp = np.zeros(n_fix + 2)
    fp = np.zeros(n_fix + 2)
    tp[-1] = fp[-1] = 1
    for i in range(1, n_fix + 1):
        thresh = allthreshes[i - 1]
        aboveth = np.sum(S >= thresh)
        tp[i] = i / n_fix
        fp[i] = (aboveth - i) / (n_pix - n_fix)
    return float(np.trapezoid(tp, fp))


@pytest.mark.parametrize("seed", range(5))
def test_auc_judd_matches_mit_loop_on_distinct_values(seed):
    rng = np.random.default_rng(seed)
    sal = rng.random((12, 15))
    fix = rng.random((12, 15)) < 0.1
    fix[0, 0] = True
    assert auc_judd(sal, fix) == pytest.approx(auc_judd_mit_loop(sal, fix), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_auc_judd_equals_roc_auc_when_every_value_occurs_at_a_fixation(seed):
    rng = np.random.default_rng(seed)
    levels = rng.random(6)
    sal = levels[rng.integers(0, 6, size=(10, 10))]   # heavy ties, also among fixations
    fix = rng.random((10, 10)) < 0.3
    for v in levels:                                  # make every level occur at some fixation
        where = np.argwhere(sal == v)
        if len(where):
            fix[tuple(where[0])] = True
    assert auc_judd(sal, fix) == pytest.approx(roc_auc_score(fix.ravel(), sal.ravel()), abs=1e-12)


def test_auc_judd_hand_cases():
    sal = np.array([[0.9, 0.1], [0.8, 0.2]])
    assert auc_judd(sal, np.array([[1, 0], [0, 0]])) == 1.0
    # one fixation at the minimum: the curve jumps straight to (1, 1), area 1/2 (as in AUC_Judd.m)
    assert auc_judd(sal, np.array([[0, 1], [0, 0]])) == pytest.approx(0.5)
    # fixation on 0.8: thresholds {0.8}: tp 1, fp 1/3 -> area = 1/3 * 1/2 + 2/3 = 5/6
    assert auc_judd(sal, np.array([[0, 0], [1, 0]])) == pytest.approx(5 / 6)
    # a constant map cannot tell fixations apart
    assert auc_judd(np.ones((3, 3)), np.eye(3)) == pytest.approx(0.5)
    assert np.isnan(auc_judd(sal, np.zeros((2, 2))))
    assert np.isnan(auc_judd(sal, np.ones((2, 2))))
    with pytest.raises(ValueError, match="same shape"):
        auc_judd(sal, np.zeros((3, 3)))


@pytest.mark.parametrize("seed", range(3))
def test_cc_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.random((9, 9)), rng.random((9, 9))
    assert pearson_cc(a, b) == pytest.approx(stats.pearsonr(a.ravel(), b.ravel())[0], abs=1e-12)
    assert pearson_cc(a, 3 * a + 1) == pytest.approx(1.0)


def test_cc_edge_cases():
    assert np.isnan(pearson_cc(np.ones((3, 3)), np.random.default_rng(0).random((3, 3))))
    with pytest.raises(ValueError, match="resize"):
        pearson_cc(np.ones((3, 3)), np.ones((4, 4)))


def test_nss_matches_definition():
    rng = np.random.default_rng(0)
    sal = rng.random((8, 8))
    fix = rng.random((8, 8)) < 0.2
    z = (sal - sal.mean()) / sal.std()
    assert nss(sal, fix) == pytest.approx(z[fix].mean())
    # coordinates give the same as the map, and count repeated fixations each time
    coords = np.argwhere(fix)
    assert nss(sal, coords) == pytest.approx(z[fix].mean())
    twice = np.concatenate([coords, coords[:1]])
    assert nss(sal, twice) == pytest.approx(np.concatenate([z[fix], z[tuple(coords[0])][None]]).mean())


def test_nss_edge_cases():
    assert np.isnan(nss(np.ones((3, 3)), np.eye(3)))
    assert np.isnan(nss(np.eye(3), np.zeros((3, 3))))
    assert np.isnan(nss(np.eye(3), np.zeros((0, 2), dtype=int)))
    with pytest.raises(ValueError, match="outside"):
        nss(np.eye(3), np.array([[3, 0]]))


@pytest.mark.parametrize("shape,out", [((4, 4), (2, 2)), ((60, 80), (7, 7)), ((7, 7), (30, 40)), ((5, 9), (3, 3))])
def test_resize_map_matches_torch_antialiased_bilinear(shape, out):
    torch = pytest.importorskip("torch")
    m = np.random.default_rng(0).random(shape)
    ref = torch.nn.functional.interpolate(torch.tensor(m)[None, None], size=out, mode="bilinear",
                                          align_corners=False, antialias=True)[0, 0].numpy()
    np.testing.assert_allclose(resize_map(m, out), ref, atol=1e-6)


def test_resize_map_keeps_constants_and_identity():
    np.testing.assert_allclose(resize_map(np.full((50, 70), 3.0), (7, 7)), 3.0, rtol=1e-6)
    m = np.random.default_rng(1).random((5, 6))
    np.testing.assert_allclose(resize_map(m, (5, 6)), m, rtol=1e-6)
    with pytest.raises(ValueError):
        resize_map(np.ones(5), (2, 2))


def test_center_crop():
    np.testing.assert_array_equal(center_crop(np.arange(12).reshape(3, 4)), [[0, 1, 2], [4, 5, 6], [8, 9, 10]])
    np.testing.assert_array_equal(center_crop(np.arange(12).reshape(4, 3)), np.arange(12).reshape(4, 3)[0:3])
    assert center_crop(np.zeros((10, 20))).shape == (10, 10)


def test_patch_similarity_map():
    rng = np.random.default_rng(0)
    tokens, emb = rng.normal(size=(9, 4)), rng.normal(size=4)
    ref = np.array([t @ emb / np.linalg.norm(t) / np.linalg.norm(emb) for t in tokens]).reshape(3, 3)
    np.testing.assert_allclose(patch_similarity_map(tokens, emb), ref)
    with pytest.raises(ValueError, match="square"):
        patch_similarity_map(tokens[:8], emb)


# ----------------------------------------------------------------------------- imresize

def test_imresize_by_hand():
    # [0 1] -> 4 samples at u = 0.75, 1.25, 1.75, 2.25 (1-based), symmetric padding [.. 0 | 0 1 | 1 ..];
    # Keys a = -0.5: k(0.25) = 0.8672, k(0.75) = 0.2266, k(1.25) = -0.0703, k(1.75) = -0.0234
    np.testing.assert_allclose(imresize(np.array([[0.0, 1.0]]), (1, 4)),
                               [[-0.09375, 0.203125, 0.796875, 1.09375]])
    np.testing.assert_allclose(imresize(np.array([[0.0, 1.0]]), (1, 4), "bilinear"), [[0, 0.25, 0.75, 1]])
    np.testing.assert_array_equal(imresize(np.full((3, 3), 0.3), (7, 5)), np.full((7, 5), 0.3))  # exact


@pytest.mark.parametrize("method,pil", [("bicubic", Image.BICUBIC), ("bilinear", Image.BILINEAR)])
@pytest.mark.parametrize("shape_in,shape_out", [((7, 7), (50, 60)), ((14, 14), (96, 128)), ((40, 30), (9, 11))])
def test_imresize_equals_pil_away_from_the_border(method, pil, shape_in, shape_out):
    """PIL's resampling has the same kernels, centre alignment and antialiasing; it differs only
    near the border, where it renormalises the clipped kernel instead of mirroring."""
    m = np.random.default_rng(0).random(shape_in).astype(np.float32)
    ours = imresize(m, shape_out, method)
    ref = np.asarray(Image.fromarray(m, "F").resize(shape_out[::-1], pil), dtype=np.float64)
    mr = int(np.ceil(3 * max(shape_out[0] / shape_in[0], shape_in[0] / shape_out[0])))
    mc = int(np.ceil(3 * max(shape_out[1] / shape_in[1], shape_in[1] / shape_out[1])))
    np.testing.assert_allclose(ours[mr:-mr, mc:-mc], ref[mr:-mr, mc:-mc], atol=1e-5)


def test_regions_and_placement():
    assert human_region((768, 1024), "center") == (slice(0, 768), slice(128, 896))
    assert human_region((768, 1024), "none") == (slice(0, 768), slice(0, 1024))
    assert [crop_for_resize_mode(m) for m in ("shortest", "squash", "longest")] == ["center", "none", "letterbox"]
    with pytest.raises(ValueError, match="resize_mode 'fit'"):
        crop_for_resize_mode("fit")
    with pytest.raises(ValueError, match="crop 'middle'"):
        human_region((3, 4), "middle")
    pred = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(model_map_on_human(pred, (6, 8), "center"), imresize(pred, (6, 6)))
    np.testing.assert_array_equal(model_map_on_human(pred, (6, 8), "none"), imresize(pred, (6, 8)))
    np.testing.assert_array_equal(model_map_on_human(pred, (6, 8), "letterbox"), imresize(pred, (8, 8))[1:7])


# ----------------------------------------------------------------------------- synthetic MIT-like maps

def mit_like(seed, h=96, w=128):
    """A fixation density map (sum of Gaussian clusters, some outside the central square) and
    binary fixations drawn from it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    dens = np.zeros((h, w))
    centres = [(rng.uniform(0.2, 0.8) * h, rng.uniform(0.05, 0.2) * w),     # left margin
               (rng.uniform(0.2, 0.8) * h, rng.uniform(0.8, 0.95) * w),     # right margin
               (rng.uniform(0.3, 0.7) * h, rng.uniform(0.35, 0.65) * w)]    # centre
    for cy, cx in centres:
        dens += rng.uniform(0.5, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.06 * w) ** 2))
    p = dens.ravel() / dens.sum()
    fix = np.zeros(h * w, bool)
    fix[rng.choice(h * w, size=40, p=p)] = True
    return dens, fix.reshape(h, w)


def perfect_model_map(dens, crop, g=14):
    """What a model that predicts its own view perfectly outputs on its G x G grid."""
    h, w = dens.shape
    if crop == "center":
        rs, cs = human_region(dens.shape, "center")
        view = dens[rs, cs]
    elif crop == "letterbox":
        side = max(h, w)
        view = np.zeros((side, side))
        view[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = dens
    else:
        view = dens
    return resize_map(view, (g, g))


@pytest.mark.parametrize("resize_mode", ["shortest", "squash", "longest"])
def test_default_compares_the_region_the_model_saw(tmp_path, resize_mode):
    """A model map that matches its view perfectly scores CC ~1 with the default (crop: auto,
    from the preprocessing its embedding file records); compared on the wrong region it does not."""
    seen = crop_for_resize_mode(resize_mode)
    ids, paths, fixpaths, maps = [], [], [], []
    for k in range(4):
        dens, fix = mit_like(k)
        p, f = tmp_path / f"d{k}.png", tmp_path / f"f{k}.png"
        Image.fromarray((dens / dens.max() * 255).astype(np.uint8)).save(p)
        Image.fromarray(fix.astype(np.uint8) * 255).save(f)
        ids.append(f"i{k}")
        paths.append(str(p))
        fixpaths.append(str(f))
        maps.append(perfect_model_map(dens, seen))
    tables = {"s": DatasetTables(_images(ids, paths, fixpaths))}
    emb = EmbeddingTable(ids=np.array(ids), X=np.ones((4, 2), np.float32), spatial=np.stack(maps).astype(np.float32),
                         meta={"preprocess": f"224px-bicubic-{resize_mode}"})

    def cc(**options):
        r = registry.evaluate("saliency_alignment", embeddings={"s": emb}, tables=tables, classifier=None,
                              inputs={"dataset": "s"}, options=options).rows
        return r.set_index("variant")["value"]

    default = cc()
    assert default["cc"] > 0.97, default
    assert default["auc_judd"] > 0.8 and default["nss"] > 1.0
    wrong = [c for c in ("center", "none", "letterbox") if c != seen]
    for c in wrong:
        assert cc(crop=c)["cc"] < default["cc"] - 0.05, (c, cc(crop=c)["cc"], default["cc"])
    assert cc(crop=seen)["cc"] == pytest.approx(default["cc"])


def _images(ids, paths, fixpaths):
    import pandas as pd

    return pd.DataFrame({"image_id": ids, "path": [f"/x/{i}.jpg" for i in ids], "member": "", "map_path": paths,
                         "fixation_path": fixpaths})


def test_cc_at_map_resolution_is_the_benchmarks_and_patch_grid_is_a_variant():
    dens, fix = mit_like(7)
    pred = np.random.default_rng(1).random((14, 14))
    rs, cs = human_region(dens.shape, "center")
    human = dens[rs, cs]
    s = saliency_scores(pred, dens, fix)
    # CC.m: map1 = imresize(saliencyMap1, size(saliencyMap2)); corr2 of the standardised maps
    assert s["cc"] == pytest.approx(np.corrcoef(imresize(pred, human.shape).ravel(), human.ravel())[0, 1])
    coarse = saliency_scores(pred, dens, fix, cc_resolution="patch_grid")
    assert coarse["cc"] == pytest.approx(np.corrcoef(pred.ravel(), resize_map(human, (14, 14)).ravel())[0, 1])
    assert coarse["cc"] != pytest.approx(s["cc"], abs=1e-3)
    assert coarse["nss"] == s["nss"] and coarse["auc_judd"] == s["auc_judd"]  # NSS/AUC are always at map size
    # NSS.m: mean of the standardised, enlarged map at the fixations (ddof=0 here, MATLAB's std is ddof=1:
    # a factor sqrt(1 - 1/N) apart, < 1e-4 at 96 x 96 pixels)
    up = imresize(pred, human.shape)
    f = fix[rs, cs]
    assert s["nss"] == pytest.approx(((up - up.mean()) / up.std(ddof=1))[f].mean(), rel=1e-4)
    bil = saliency_scores(pred, dens, fix, interpolation="bilinear")
    assert bil["cc"] == pytest.approx(np.corrcoef(imresize(pred, human.shape, "bilinear").ravel(), human.ravel())[0, 1])
    none = saliency_scores(pred, dens, None)
    assert np.isnan(none["nss"]) and np.isnan(none["auc_judd"]) and none["cc"] == s["cc"]


def test_config_schema_lists_exactly_the_evaluators_options():
    from pathlib import Path

    import yaml

    from clipdyn.metrics.saliency_alignment import CC_RESOLUTIONS, CROPS, INTERPOLATIONS

    schema = yaml.safe_load((Path(__file__).resolve().parents[2] / "workflow" / "schemas" /
                             "config.schema.yaml").read_text())
    rule, = [r for r in schema["properties"]["metrics"]["additionalProperties"]["allOf"]
             if r["if"]["properties"]["kind"]["const"] == "saliency_alignment"]
    opts = rule["then"]["properties"]["options"]["properties"]
    assert opts["crop"]["enum"] == ["auto", *CROPS]
    assert tuple(opts["interpolation"]["enum"]) == INTERPOLATIONS
    assert tuple(opts["cc_resolution"]["enum"]) == CC_RESOLUTIONS
