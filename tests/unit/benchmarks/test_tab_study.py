"""benchmarks.tab_study: the latent kNN term scores each row alone, and its helpers' arithmetic."""
import numpy as np
import pytest

from benchmarks.tab_study import knn_distance, latent_means, robust_z


def test_knn_distance_is_the_mean_distance_to_the_k_nearest_reference_rows():
    ref = np.array([[0.0], [1.0], [3.0], [10.0]])
    d = knn_distance(ref, np.array([[0.0], [2.0]]), k=2)
    np.testing.assert_allclose(d, [0.5, 1.0])  # 0: {0, 1}; 2: {1, 3}


def test_robust_z_uses_the_reference_median_and_iqr():
    ref = np.array([0.0, 1.0, 2.0, 3.0, 4.0])  # median 2, IQR 2
    np.testing.assert_allclose(robust_z(np.array([2.0, 6.0]), ref), [0.0, 2.0])
    assert np.isfinite(robust_z(np.array([1.0]), np.ones(4))).all()


def test_latent_means_do_not_depend_on_which_rows_are_encoded_together(fitted, frame):
    z = latent_means(fitted, frame)
    assert z.shape == (len(frame), fitted.engine_.model.latent_dim)
    alone = np.concatenate([latent_means(fitted, frame.iloc[[i]]) for i in (0, 5, 77)])
    np.testing.assert_allclose(alone, z[[0, 5, 77]], rtol=1e-5, atol=1e-6)
    assert knn_distance(z, z[:3], k=1) == pytest.approx(0.0, abs=1e-9)


def test_combo_variants_add_the_columns_robust_z_scores_on_the_held_out_rows():
    import pandas as pd

    from benchmarks.tab_study import combo_variants

    val = pd.DataFrame({"anomaly_score": [0.0, 1.0, 2.0, 3.0, 4.0], "nll_iwae": [1.0, 2.0, 3.0, 4.0, 5.0],
                        "recon_error": [0.0, 0.1, 0.2, 0.3, 0.4]})  # medians 2 / 3 / 0.2, IQRs 2 / 2 / 0.2
    test = pd.DataFrame({"anomaly_score": [2.0, 6.0], "nll_iwae": [3.0, 3.0], "recon_error": [0.6, 0.2]})
    out = combo_variants(val, test, "x:")
    np.testing.assert_allclose(out["x:ours+recon"], [2.0, 2.0])
    np.testing.assert_allclose(out["x:nll+recon"], [2.0, 0.0])
    np.testing.assert_array_equal(out["x:ours"], [2.0, 6.0])
    np.testing.assert_array_equal(out["x:recon"], [0.6, 0.2])
