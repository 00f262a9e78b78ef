"""Where reports live in the lake: ``<dataset>/reports/model_version=<label>/batch_id=<id>/``.

Each folder holds ``report.html`` (what a person opens), ``report.json`` (the same content for
tools) and ``figures.json`` (the figures as HTML fragments, which the review page shows beside
each item). Each file is written atomically; ``report.json`` is written last, so a folder with
a ``report.json`` is complete. Names are checked by the lake's rule before they touch a path.
"""
from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass
from typing import Any, Optional

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pipelines.lake.storage import atomic_write
from pipelines.lake.validation import check_name

FILES = ("report.html", "figures.json", "report.json")  # in write order


@dataclass(frozen=True)
class ReportRef:
    """One stored report."""

    dataset: str
    label: str  # the scores' model version key, e.g. transactions-v3
    batch_id: str


class ReportStore:
    """Reports under a lake root (a local path or fsspec URL)."""

    def __init__(self, lake_url: str, **storage_options: Any):
        self.url = str(lake_url)
        self.fs, root = fsspec.core.url_to_fs(self.url, **storage_options)
        self.root = root.rstrip("/") or "/"

    def folder(self, ref: ReportRef) -> str:
        return "/".join([
            self.root, check_name("dataset", ref.dataset), "reports",
            f"model_version={check_name('model version', ref.label)}", f"batch_id={check_name('batch', ref.batch_id)}",
        ])

    def write(self, ref: ReportRef, html: str, report_json: str, figures: dict[str, Any]) -> str:
        """Store one report's files; returns where ``report.html`` is (a local path, or a URL
        such as ``s3://…`` for an object store)."""
        folder = self.folder(ref)
        payloads = {"report.html": html.encode("utf-8"), "figures.json": json.dumps(figures).encode("utf-8"),
                    "report.json": report_json.encode("utf-8")}
        for name in FILES:
            atomic_write(self.fs, f"{folder}/{name}", payloads[name], stage=f"report-{name}")
        path = f"{folder}/report.html"
        return path if "://" not in self.url else self.fs.unstrip_protocol(path)

    def list(self, dataset: Optional[str] = None, label: Optional[str] = None) -> list[ReportRef]:
        """Every complete report (or those of ``dataset``, and of its scores key ``label``: only
        that folder is listed), sorted by dataset, label and batch."""
        where = check_name("dataset", dataset) if dataset else "*"
        version = check_name("model version", label) if label else "*"
        if isinstance(self.fs, LocalFileSystem):
            refs = self._list_local(dataset, label)
        else:
            refs = []
            for path in self.fs.glob(f"{self.root}/{where}/reports/model_version={version}/batch_id=*/report.json"):
                batch_dir = posixpath.dirname(path)
                label_dir = posixpath.dirname(batch_dir)
                dataset_dir = posixpath.dirname(posixpath.dirname(label_dir))
                refs.append(ReportRef(posixpath.basename(dataset_dir), posixpath.basename(label_dir).split("=", 1)[1],
                                      posixpath.basename(batch_dir).split("=", 1)[1]))
        return sorted(refs, key=lambda r: (r.dataset, r.label, r.batch_id))

    def _list_local(self, dataset: Optional[str], label: Optional[str]) -> list[ReportRef]:
        """:meth:`list` on a local lake with ``os.scandir``: fsspec's glob took 1.3 s over 10,000
        report folders, a listing and a stat each 0.08 s (a year of hourly batches)."""
        def folders(path: str, prefix: str = "") -> list[str]:
            try:
                with os.scandir(path) as entries:
                    return [e.name[len(prefix):] for e in entries if e.is_dir() and e.name.startswith(prefix)]
            except (FileNotFoundError, NotADirectoryError):
                return []

        refs = []
        for name in [dataset] if dataset else folders(self.root):
            for version in [label] if label else folders(f"{self.root}/{name}/reports", "model_version="):
                base = f"{self.root}/{name}/reports/model_version={version}"
                refs += [ReportRef(name, version, batch) for batch in folders(base, "batch_id=")
                         if os.path.exists(f"{base}/batch_id={batch}/report.json")]
        return refs

    def datasets(self) -> list[str]:
        """The datasets that have a reports folder, sorted."""
        return sorted(posixpath.basename(posixpath.dirname(p)) for p in self.fs.glob(f"{self.root}/*/reports"))

    def exists(self, ref: ReportRef) -> bool:
        """Whether ``ref``'s report is complete (its ``report.json`` is written last)."""
        return self.fs.exists(f"{self.folder(ref)}/report.json")

    def _read(self, ref: ReportRef, name: str) -> Optional[bytes]:
        path = f"{self.folder(ref)}/{name}"
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "rb") as handle:
            return handle.read()

    def report(self, ref: ReportRef) -> Optional[dict]:
        """The report's data, or None if there is none."""
        data = self._read(ref, "report.json")
        return None if data is None else json.loads(data)

    def figures(self, ref: ReportRef) -> dict:
        data = self._read(ref, "figures.json")
        return {} if data is None else json.loads(data)

    def html(self, ref: ReportRef) -> Optional[bytes]:
        return self._read(ref, "report.html")
