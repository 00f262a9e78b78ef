"""DetectorBase: the contract both detectors implement."""
import pytest

from vae_core import DetectorBase, TimeSeriesVAEDetector, VAEDetector


def test_both_detectors_implement_the_base():
    assert issubclass(VAEDetector, DetectorBase) and issubclass(TimeSeriesVAEDetector, DetectorBase)
    assert {VAEDetector.kind, TimeSeriesVAEDetector.kind} == {"tabular", "timeseries"}
    VAEDetector(seed=0)
    TimeSeriesVAEDetector(seed=0)


def test_a_detector_without_score_and_explain_cannot_be_built():
    class Partial(DetectorBase):
        kind = "partial"

        def _saved_attributes(self):
            return {}

        def _restore(self, meta):
            pass

    with pytest.raises(TypeError, match="abstract"):
        Partial()
