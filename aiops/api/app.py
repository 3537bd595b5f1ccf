"""The FastAPI application (DESIGN.md "REST API"), built around the engine's running parts.

Reads are open unless ``read_role`` is set; writes need a bearer token with the right role.
Every write and every refusal is audited with who and when. Errors carry a one-line reason
(``{"error": ...}``) and the HTTP status that says what the caller can do: 401 authenticate,
403 ask someone with the role, 404 no such thing, 409 not in this state, 422 fix the request.
The engine's parts (executor, notifier, learner) are optional so the API can run beside a
pipeline that has none of them configured: the endpoints that need one answer 503.
The dashboard (:mod:`aiops.dashboard`) is mounted on the same app, under the same read rule.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from slack_sdk.signature import SignatureVerifier
from starlette.exceptions import HTTPException as StarletteHTTPException

from aiops import __version__
from aiops.act.model import Action
from aiops.api.auth import Principal, TokenTable, Unauthorized
from aiops.api.metrics import ApiMetrics
from aiops.dashboard import DashboardViews, NoViews, mount
from aiops.errors import Forbidden, InvalidRequest, NotFound, RequestError
from aiops.store.sqlite import Store

SLACK_MAX_AGE_S = 300  # Slack's replay window: a signed request older than this is refused
_NAME = r"^[A-Za-z0-9._:/@-]{1,256}$"


class Faults(Protocol):
    """The demo's simulator: faults on demand (``aiops demo`` only)."""

    def fault_targets(self) -> list[str]: ...
    def inject(self, service: str, kind: str, duration_s: float, magnitude: float | None = None,
               ramp_s: float = 0.0) -> dict[str, Any]: ...  # fmt: skip


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeedbackIn(_In):
    """An expert's verdict on an incident or one of its anomalies."""

    target: Literal["incident", "anomaly"]
    id: str = Field(min_length=1, max_length=512, description="incident id, or anomaly id 'series@first_seen'")
    verdict: Literal["true_positive", "false_positive"] | None = None
    root_cause: str | None = Field(default=None, pattern=_NAME, description="the service that really caused it")
    comment: str = Field(default="", max_length=2000)


class DecisionIn(_In):
    decision: Literal["approve", "reject"]
    comment: str = Field(default="", max_length=2000)
    params: dict[str, int | float | str] | None = Field(default=None, description="override the proposed parameters")


class FaultIn(_In):
    service: str = Field(pattern=_NAME)
    kind: Literal["cpu", "latency", "errors", "memory_leak", "crash", "bad_release"]
    duration_s: float = Field(default=300.0, ge=30, le=7200)
    magnitude: float | None = Field(default=None, ge=0, le=5)
    ramp_s: float = Field(default=0.0, ge=0, le=7200)


class RevertIn(_In):
    version: int = Field(ge=1)


class Executor(Protocol):
    def decide(self, action_id: str, who: str, role: str, approve: bool, comment: str = "",
               params: dict[str, Any] | None = None) -> Action: ...  # fmt: skip
    def action(self, action_id: str) -> Action: ...
    def actions(self, status: str | None = None, incident_id: str | None = None) -> list[Action]: ...


class Notifier(Protocol):
    def action_changed(self, action: Action, incident: Any = None) -> None: ...
    def remember_response_url(self, incident_id: str, response_url: str) -> None: ...


class Learner(Protocol):
    def feedback(self, who: str, fb: FeedbackIn) -> dict[str, Any]: ...
    def feedback_for(self, incident_id: str) -> list[dict[str, Any]]: ...
    def similar(self, incident: dict[str, Any]) -> list[dict[str, Any]]: ...
    def pending(self) -> list[dict[str, Any]]: ...
    def decide(self, change_id: str, who: str, role: str, approve: bool, comment: str = "") -> dict[str, Any]: ...
    def models(self) -> list[dict[str, Any]]: ...
    def revert(self, name: str, version: int, who: str) -> dict[str, Any]: ...


class ErrorOut(BaseModel):
    error: str = Field(description="what went wrong, for the person who made the request")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in [(400, "the body cannot be parsed"), (401, "no or invalid bearer token; Slack: bad or stale signature"),
                       (403, "the caller's role may not do this"), (404, "no such thing"),
                       (409, "not in a state that allows it (already decided, expired, running)"),
                       (422, "invalid request: a field out of bounds or malformed"),
                       (503, "the part of the engine this needs is not running")]
}  # fmt: skip


@dataclass
class ApiContext:
    store: Store
    tokens: TokenTable
    signing_secret: str | None = None
    slack_users: dict[str, str] = field(default_factory=dict)  # Slack user id -> role
    read_role: str | None = None
    executor: Executor | None = None
    notifier: Notifier | None = None
    learner: Learner | None = None
    health: Callable[[], dict[str, Any]] = dict
    snapshot: Callable[[], dict[str, float]] = dict
    clock: Callable[[], float] = time.time
    faults: Faults | None = None  # the demo's simulator: POST /demo/faults
    views: DashboardViews | None = None  # live pipeline state for the dashboard (None: store only)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(title="aiops", version=__version__, description="Incidents, feedback and approvals of the aiops engine.",
                  responses=ERRORS)  # fmt: skip
    metrics = ApiMetrics(ctx.snapshot)
    app.state.ctx, app.state.metrics = ctx, metrics

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Any]) -> Any:
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(request.method, route, str(response.status_code)).inc()
        return response

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        if isinstance(exc, InvalidRequest):
            metrics.rejected_params.inc()
        return _error(exc.status, str(exc))

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        metrics.auth_failures.labels(str(exc)).inc()
        ctx.store.audit("anonymous", "auth.refused", request.url.path, ok=False, reason=str(exc),
                        client=request.client.host if request.client else None)  # fmt: skip
        return _error(401, str(exc), {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.rejected_params.inc()
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return _error(422, f"invalid request: {where}")

    def caller(authorization: Annotated[str | None, Header()] = None) -> Principal:
        return ctx.tokens.principal(authorization)

    def role(needed: str) -> Callable[..., Principal]:
        def check(request: Request, principal: Annotated[Principal, Depends(caller)]) -> Principal:
            if not principal.can(needed):
                metrics.auth_failures.labels("role").inc()
                ctx.store.audit(principal.who, "auth.forbidden", request.url.path, ok=False, role=principal.role,
                                needed=needed)  # fmt: skip
                raise Forbidden(f"{principal.who} has role {principal.role}; this needs {needed}")
            return principal

        return check

    def reader(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
        if ctx.read_role is not None:
            role(ctx.read_role)(request, ctx.tokens.principal(authorization))

    def need(part: Any, name: str) -> Any:
        if part is None:
            raise _Unavailable(name)
        return part

    @app.exception_handler(_Unavailable)
    async def unavailable(request: Request, exc: _Unavailable) -> JSONResponse:
        return _error(503, f"{exc} is not configured on this engine")

    Read = Depends(reader)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        checks = ctx.health()
        ok = all(c.get("ok", True) for c in checks.values() if isinstance(c, dict))
        return JSONResponse({"status": "ok" if ok else "degraded", "version": __version__, "checks": checks},
                            status_code=200 if ok else 503)  # fmt: skip

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        """The engine's own figures in Prometheus' text exposition format."""
        return PlainTextResponse(metrics.render())

    @app.get("/incidents", dependencies=[Read])
    def incidents(status: Literal["open", "resolved"] | None = None,
                  limit: Annotated[int, Query(ge=1, le=10_000)] = 500) -> list[dict[str, Any]]:  # fmt: skip
        """Latest version of each incident (DESIGN.md "Incident output"), oldest first."""
        return ctx.store.incidents(status, limit)

    @app.get("/incidents/{incident_id}", dependencies=[Read])
    def incident(incident_id: str) -> dict[str, Any]:
        """The incident record, plus its actions, feedback and the most similar resolved incidents."""
        record = ctx.store.incident(incident_id)
        if record is None:
            raise NotFound(f"no incident {incident_id}")
        actions = ctx.executor.actions(incident_id=incident_id) if ctx.executor else []
        return {
            **record,
            "actions": [a.model_dump() for a in actions],
            "feedback": ctx.learner.feedback_for(incident_id) if ctx.learner else [],
            "similar": ctx.learner.similar(record) if ctx.learner else [],
        }

    @app.get("/anomalies", dependencies=[Read])
    def anomalies(service: Annotated[str | None, Query(pattern=_NAME)] = None,
                  since_unix_nano: Annotated[int, Query(ge=0, lt=2**63)] = 0,
                  limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> list[dict[str, Any]]:  # fmt: skip
        return ctx.store.anomalies(service, since_unix_nano, limit)

    @app.post("/feedback", status_code=201)
    def feedback(body: FeedbackIn, who: Annotated[Principal, Depends(role("expert"))]) -> dict[str, Any]:
        """Record a verdict; a false positive retunes its series, a root cause teaches the ranking."""
        if body.verdict is None and body.root_cause is None:
            raise InvalidRequest("give a verdict, a root_cause, or both")
        learner = need(ctx.learner, "feedback learning")
        result = learner.feedback(who.who, body)
        ctx.store.audit(who.who, "feedback", body.id, target_kind=body.target, verdict=body.verdict,
                        root_cause=body.root_cause, result=result.get("effect"))  # fmt: skip
        return result

    @app.get("/approvals", dependencies=[Read])
    def approvals(status: str | None = Query(default=None, pattern=r"^[a-z_]{1,20}$")) -> list[dict[str, Any]]:
        """Proposed remediations (and their history), and model changes waiting for sign-off."""
        out = [a.model_dump() | {"type": "playbook"} for a in (ctx.executor.actions(status) if ctx.executor else [])]
        if ctx.learner and status in (None, "proposed"):
            out += [c | {"type": "model_change"} for c in ctx.learner.pending()]
        return out

    @app.post("/approvals/{approval_id}")
    def decide(approval_id: str, body: DecisionIn,
               who: Annotated[Principal, Depends(role("viewer"))]) -> dict[str, Any]:  # fmt: skip
        """Approve or reject; the playbook (or the model change) says which roles may."""
        approve = body.decision == "approve"
        if approval_id.startswith("model-"):
            return need(ctx.learner, "feedback learning").decide(approval_id, who.who, who.role, approve, body.comment)
        executor = need(ctx.executor, "the playbook executor")
        action = executor.decide(approval_id, who.who, who.role, approve, body.comment, body.params)
        if ctx.notifier is not None:
            ctx.notifier.action_changed(action, ctx.store.incident(action.incident_id))
        return action.model_dump()

    @app.post("/slack/actions")
    async def slack_actions(request: Request) -> JSONResponse:
        """Slack interactivity (Approve/Reject buttons), signed with the app's signing secret."""
        body = (await request.body()).decode("utf-8", "replace")
        refusal = _check_signature(ctx, body, request.headers)
        if refusal is not None:
            metrics.bad_signatures.labels(refusal).inc()
            ctx.store.audit("slack", "slack.refused", "/slack/actions", ok=False, reason=refusal)
            return _error(401, refusal)
        try:
            payload = json.loads(parse_qs(body).get("payload", [""])[0])
            pressed = payload["actions"][0]
            user = payload["user"]
            action_id, decision = str(pressed["value"]), str(pressed["action_id"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise InvalidRequest("not a Slack block_actions payload") from None
        if decision not in ("approve", "reject"):
            raise InvalidRequest(f"unknown button {decision!r}")
        slack_role = ctx.slack_users.get(str(user.get("id")))
        who = f"slack:{user.get('username') or user.get('id')}"
        if slack_role is None:
            ctx.store.audit(who, "auth.forbidden", action_id, ok=False, reason="Slack user has no role")
            return JSONResponse({"response_type": "ephemeral", "replace_original": False,
                                 "text": f"{who} may not approve: no role for this Slack user in aiops"})  # fmt: skip
        executor = need(ctx.executor, "the playbook executor")
        try:
            action = executor.decide(action_id, who, slack_role, decision == "approve")
        except RequestError as e:
            return JSONResponse({"response_type": "ephemeral", "replace_original": False, "text": str(e)})
        if ctx.notifier is not None:
            if payload.get("response_url"):
                ctx.notifier.remember_response_url(action.incident_id, str(payload["response_url"]))
            ctx.notifier.action_changed(action, ctx.store.incident(action.incident_id))
        verb = "approved" if decision == "approve" else "rejected"
        return JSONResponse({"response_type": "ephemeral", "replace_original": False,
                             "text": f"{who} {verb} {action.playbook} on {action.service}: now {action.status}"})  # fmt: skip

    @app.get("/models", dependencies=[Read])
    def models() -> list[dict[str, Any]]:
        """Every model version (detectors, forecasts, ranking) with what changed and its figures."""
        return need(ctx.learner, "feedback learning").models()

    @app.post("/models/{name}/revert")
    def revert(name: Annotated[str, PathParam(pattern=r"^[a-z_]{1,32}$")], body: RevertIn,
               who: Annotated[Principal, Depends(role("approver"))]) -> dict[str, Any]:  # fmt: skip
        """Make an earlier version live again (itself recorded as a new version)."""
        return need(ctx.learner, "feedback learning").revert(name, body.version, who.who)

    if ctx.faults is not None:
        faults = ctx.faults

        @app.post("/demo/faults", status_code=201)
        def inject(body: FaultIn, who: Annotated[Principal, Depends(role("approver"))]) -> dict[str, Any]:
            """Break something in the simulated shop now (``aiops demo`` only)."""
            try:
                truth = faults.inject(body.service, body.kind, body.duration_s, body.magnitude, body.ramp_s)
            except KeyError as e:
                raise NotFound(str(e.args[0])) from None
            except ValueError as e:
                raise InvalidRequest(str(e)) from None
            ctx.store.audit(who.who, "demo.fault", body.service, kind=body.kind, duration_s=body.duration_s)
            return truth

    @app.get("/audit", dependencies=[Depends(role("expert"))])
    def audit(target: Annotated[str | None, Query(max_length=512)] = None,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> list[dict[str, Any]]:  # fmt: skip
        return ctx.store.audit_log(target, limit)

    mount(app, ctx, ctx.views or NoViews(), [Read])
    return app


class _Unavailable(Exception):
    """A part of the engine this endpoint needs is not running (HTTP 503)."""


def _check_signature(ctx: ApiContext, body: str, headers: Any) -> str | None:
    """Why a Slack request must be refused, or None: stale timestamps and bad signatures both 401."""
    if not ctx.signing_secret:
        return "Slack signing secret not configured"
    timestamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature", "")
    if not timestamp.isdigit() or not signature:
        return "missing Slack signature headers"
    if abs(ctx.clock() - int(timestamp)) > SLACK_MAX_AGE_S:
        return "stale Slack request timestamp (replay window is 5 minutes)"
    verifier = SignatureVerifier(ctx.signing_secret, clock=_FixedClock(ctx.clock))
    if not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
        return "bad Slack signature"
    return None


class _FixedClock:
    """slack_sdk's verifier asks a clock for "now"; ours is injectable for tests."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock

    def now(self) -> float:
        return self._clock()
