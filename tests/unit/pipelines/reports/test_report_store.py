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


def test_a_local_lake_is_listed_without_fsspec_glob_and_lists_the_same(tmp_path, monkeypatch):
    """A local lake's listing is os.scandir (fsspec's glob took 1.3 s over 10,000 report
    folders: issue 30); it finds what the glob finds, which object stores still use."""
    import fsspec

    store = ReportStore(str(tmp_path / "lake"))
    for ref in (ReportRef("tx", "tx-v1", "b1"), ReportRef("tx", "tx-v2", "b1"), ReportRef("pay", "pay-v1", "b9")):
        store.write(ref, "<p>r</p>", "{}", {})
    (tmp_path / "lake/tx/reports/model_version=tx-v1/batch_id=b3").mkdir()  # incomplete: no report.json
    (tmp_path / "lake/tx/reports/stray.txt").write_text("")
    (tmp_path / "lake/empty").mkdir()
    asks = [(), ("tx",), ("tx", "tx-v1"), (None, "pay-v1"), ("nobody",)]
    local = {a: store.list(*a) for a in asks}

    def no_glob(*args, **kwargs):
        raise AssertionError("a local lake was globbed")

    monkeypatch.setattr(store.fs, "glob", no_glob)
    assert {a: store.list(*a) for a in asks} == local
    monkeypatch.undo()
    globbed = ReportStore(str(tmp_path / "lake"))
    globbed.fs = fsspec.filesystem("memory")  # any other file system: the glob
    monkeypatch.setattr(globbed.fs, "glob", lambda pattern: store.fs.glob(pattern))
    assert {a: globbed.list(*a) for a in asks} == local
    assert local[()] == [ReportRef("pay", "pay-v1", "b9"), ReportRef("tx", "tx-v1", "b1"), ReportRef("tx", "tx-v2", "b1")]
