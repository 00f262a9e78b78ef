"""ReportStore.list over a real lake folder: by dataset, and by a dataset's scores key."""
import pytest

from pipelines.lake.errors import LakeError
from pipelines.reports.store import ReportRef, ReportStore


def test_list_reads_only_the_folders_asked_for(tmp_path):
    store = ReportStore(str(tmp_path / "lake"))
    refs = [ReportRef("tx", "tx-v1", "b2"), ReportRef("tx", "tx-v1", "b1"), ReportRef("tx", "tx-v2", "b1"),
            ReportRef("sensors", "sensors-v1", "b1")]
    for ref in refs:
        store.write(ref, "<p>r</p>", "{}", {})
    # a folder without report.json (a write that died before its last file) is not a report
    (tmp_path / "lake/tx/reports/model_version=tx-v1/batch_id=b3").mkdir()
    assert store.list() == sorted(refs, key=lambda r: (r.dataset, r.label, r.batch_id))
    assert store.list("tx") == [ReportRef("tx", "tx-v1", "b1"), ReportRef("tx", "tx-v1", "b2"), ReportRef("tx", "tx-v2", "b1")]
    assert store.list("tx", "tx-v1") == [ReportRef("tx", "tx-v1", "b1"), ReportRef("tx", "tx-v1", "b2")]
    assert store.list("tx", "tx-v9") == []
    with pytest.raises(LakeError, match="model version"):
        store.list("tx", "../sensors")  # a name from a user never reaches outside the lake
