"""The review web app: datasets and batches with review progress, items with verdict forms.

``create_app`` builds a FastAPI app over a lake root; ``vae-anomaly review`` serves it with
uvicorn. Plain HTML forms that work without JavaScript: with the keyboard alone, Tab reaches
every item's comment and verdict buttons, and the first unreviewed item's buttons carry access
keys (Alt+a, e, f, n; its first button has the focus). One small inline script
(``templates/keys.js``, allowed by its sha256 in the Content-Security-Policy, nothing vendored)
adds ``j``/``k`` to move between items, ``a``/``e``/``f``/``n`` to answer the item in focus and
``c`` to type its comment (Enter or Escape then returns to the item instead of submitting).

Safety:
- values from data are escaped by Jinja2's autoescaping; the only markup passed through is the
  report's own figures (matplotlib SVG, which escapes its text);
- dataset, model-version and batch names in URLs must pass the lake's name rule (else 404), and
  a verdict's item must be an item of that report (else 404): no URL reaches outside the lake;
- every POST carries the per-session token from the ``vae_csrf`` cookie (SameSite=Strict) in a
  hidden field, so another site cannot submit verdicts (else 403);
- with ``token`` set (required off 127.0.0.1), every request needs it: ``?token=`` once (kept in
  a cookie), or an ``Authorization: Bearer`` header (else 401).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlencode

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup

from pipelines.lake.errors import LakeError
from pipelines.reports.store import ReportRef, ReportStore
from pipelines.review.feedback import VERDICTS, FeedbackError, FeedbackStore, item_verdict
from pipelines.review.index import MAX_PAGE_SIZE, ORDERS, PAGE_SIZE, BadQuery, IndexQuery, index_page

CSRF_COOKIE, TOKEN_COOKIE = "vae_csrf", "vae_token"
ACCESS_KEYS = {"anomaly": "a", "expected": "e", "false_alarm": "f", "new_normal": "n"}
STATUSES = ("unreviewed", "reviewed", "all")
TEMPLATES = Path(__file__).parent / "templates"
KEYS_JS = (TEMPLATES / "keys.js").read_text(encoding="utf-8")
KEYS_JS_HASH = "sha256-" + base64.b64encode(hashlib.sha256(KEYS_JS.encode("utf-8")).digest()).decode()
CSP = f"default-src 'none'; script-src '{KEYS_JS_HASH}'; style-src 'unsafe-inline'; img-src data:; form-action 'self'"


def record_verdict(lake: ReportStore, dataset: str, label: str, batch_id: str, key: str, verdict: str, reviewer: str,
                   comment: str = "") -> None:
    """Store one verdict on one item of a stored report: what the page's form does, and the
    demo's reviewer (:class:`NotFound` when the report has no such item)."""
    report = lake.report(ReportRef(dataset, label, batch_id))
    item = next((i for i in (report or {}).get("items", []) if i["key"] == key), None)
    if item is None:
        raise NotFound()
    run_id = report.get("model", {}).get("run_id")
    feedback_store(lake, dataset).add([item_verdict(item, batch_id, label, verdict, reviewer, comment, run_id)])


class NotFound(Exception):
    """A page or item that does not exist (or a name that is not allowed)."""


def feedback_store(lake: ReportStore, dataset: str) -> FeedbackStore:
    """The feedback table of ``dataset`` in the lake (a Delta table beside its rows and scores)."""
    from pipelines.lake import Lake

    table = Lake(lake.url)
    return FeedbackStore(table.table_uri(dataset, "feedback"), table.delta_options)


def create_app(lake_url: str, reviewer: str, token: Optional[str] = None) -> FastAPI:
    """The review app over the lake at ``lake_url``; verdicts are stored as ``reviewer``."""
    app = FastAPI(title="vae-anomaly review", docs_url=None, redoc_url=None, openapi_url=None)
    # autoescape everything (Starlette's default escapes only .html/.xml names, not .j2)
    templates = Jinja2Templates(env=Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True))
    templates.env.filters["num"] = lambda v, d=4: "" if v is None else (f"{v:.{d}g}" if isinstance(v, float) else str(v))
    templates.env.filters["pct"] = lambda v: "—" if v is None else f"{100 * v:.0f}%"
    lake = ReportStore(lake_url)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token is not None:
            given = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:]
            if not hmac.compare_digest(given.encode(), token.encode()):
                return PlainTextResponse("a token is required (?token=...)", status_code=401)
        response = await call_next(request)
        if token is not None and request.query_params.get("token") == token:
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        if CSRF_COOKIE not in request.cookies:
            response.set_cookie(CSRF_COOKIE, request.state.csrf, httponly=True, samesite="strict")
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.middleware("http")
    async def session(request: Request, call_next):  # runs first: the CSRF token of this browser
        request.state.csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        return await call_next(request)

    @app.exception_handler(NotFound)
    @app.exception_handler(LakeError)
    async def not_found(request: Request, exc: Exception):
        return PlainTextResponse("not found", status_code=404)

    def page_of(request: Request, name: str, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"csrf": request.state.csrf, "reviewer": reviewer, **context})

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request, dataset: Optional[str] = None, version: Optional[str] = None, order: str = "unreviewed",
              page: int = 1, size: int = PAGE_SIZE):
        try:
            query = IndexQuery(dataset or None, version or None, order, page, min(size, MAX_PAGE_SIZE)).check()
        except BadQuery as exc:
            return PlainTextResponse(str(exc), status_code=400)

        def ingest_order(name: str) -> list[str]:
            from pipelines.lake import Lake

            return [r.batch_id for r in Lake(lake.url).list_batches(name)]

        data = index_page(lake, lambda name: feedback_store(lake, name), ingest_order, query)
        return page_of(request, "index.html.j2", orders=ORDERS, **data)

    @app.get("/reports/{dataset}/{label}/{batch_id}")
    def report_file(dataset: str, label: str, batch_id: str):
        html = lake.html(ReportRef(dataset, label, batch_id))
        if html is None:
            raise NotFound()
        return Response(html, media_type="text/html; charset=utf-8")

    @app.get("/review/{dataset}", response_class=HTMLResponse)
    def review(request: Request, dataset: str, label: Optional[str] = None, batch: Optional[str] = None,
               status: str = "unreviewed", verdict: Optional[str] = None):
        if label is not None and batch is not None:  # one batch: no listing of the dataset's reports
            refs = [ref for ref in [ReportRef(dataset, label, batch)] if lake.exists(ref)]
        else:
            refs = [r for r in lake.list(dataset) if (label is None or r.label == label) and (batch is None or r.batch_id == batch)]
        if not refs:
            raise NotFound()
        if status not in STATUSES or (verdict is not None and verdict not in VERDICTS):
            raise NotFound()
        current = feedback_store(lake, dataset).current()
        items = []
        for ref in refs:
            figs = lake.figures(ref)
            for item in (lake.report(ref) or {}).get("items", []):
                seen = current.loc[item["key"]] if item["key"] in current.index else None
                if (status == "unreviewed" and seen is not None) or (status == "reviewed" and seen is None):
                    continue
                if verdict is not None and (seen is None or seen["verdict"] != verdict):
                    continue
                items.append({**item, "ref": ref, "current": None if seen is None else seen.to_dict(),
                              "figure": Markup(figs.get(item["key"], ""))})
        items.sort(key=lambda i: (i["current"] is not None, -i["score"]))
        query = {k: v for k, v in {"label": label, "batch": batch, "status": status, "verdict": verdict}.items() if v}
        return page_of(request, "review.html.j2", dataset=dataset, items=items, verdicts=VERDICTS, keys=ACCESS_KEYS,
                    keys_js=Markup(KEYS_JS),
                    status=status, verdict=verdict, label=label, batch=batch, statuses=STATUSES,
                    here=f"/review/{dataset}" + (f"?{urlencode(query)}" if query else ""))

    @app.post("/verdict")
    def submit(request: Request, dataset: str = Form(...), label: str = Form(...), batch: str = Form(...),
               key: str = Form(...), verdict: str = Form(...), comment: str = Form(""), csrf: str = Form(""),
               next: str = Form("/")):
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not cookie or not hmac.compare_digest(cookie.encode(), csrf.encode()):
            return PlainTextResponse("missing or wrong form token: reload the page and submit again", status_code=403)
        try:
            record_verdict(lake, dataset, label, batch, key, verdict, reviewer, comment.strip())
        except FeedbackError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        return RedirectResponse(target, status_code=303)

    return app
