"""Who is looking: a login gate in front of every page.

With OIDC configured in Streamlit's secrets (an `[auth]` section), people sign in with
`st.login` and are matched by email: `dashboard.admins` see everything and may close months,
`dashboard.viewers` see what their entry allows, anyone else is turned away. Without OIDC,
people sign in with a user name and a password: `dashboard.admin_user` with the password in
`$METERLINE_DASHBOARD_PASSWORD` (`dashboard.password_env`), or a viewer with the password in
its own `password_env`. With no password configured at all the dashboard shows no data and
says how to set one.

Password sign-in is throttled per user name and per client (`dashboard.throttle`): after a
few failures each further one locks them out for longer, and a locked-out attempt is refused
without its password being looked at.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import streamlit as st

from meterline.costing.config import DashboardConfig

from .throttle import Throttle

SESSION_KEY = "meterline_viewer"


@dataclass(frozen=True)
class Viewer:
    name: str
    department: str | None  # the one department this viewer may see (None: all)
    admin: bool  # may close months

    @property
    def scope(self) -> str:
        return "all departments" if self.department is None else f"department {self.department}"


def oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except FileNotFoundError:  # no secrets.toml at all
        return False


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def check_password(cfg: DashboardConfig, user: str, password: str) -> Viewer | None:
    """The viewer these credentials sign in, or None."""
    if user == cfg.admin_user and cfg.password is not None and _same(password, cfg.password.get_secret_value()):
        return Viewer(user, None, True)
    v = cfg.viewers.get(user)
    if v is not None and v.password is not None and _same(password, v.password.get_secret_value()):
        return Viewer(user, v.department, v.admin)
    return None


def from_identity(cfg: DashboardConfig, email: str) -> Viewer | None:
    """The viewer an OIDC identity is, or None when it is not allowed in."""
    if email in cfg.admins:
        return Viewer(email, None, True)
    v = cfg.viewers.get(email)
    return Viewer(email, v.department, v.admin) if v is not None else None


def passwords_configured(cfg: DashboardConfig) -> bool:
    return cfg.password is not None or any(v.password is not None for v in cfg.viewers.values())


@st.cache_resource
def throttle() -> Throttle:
    """The process's sign-in throttle, shared by every session."""
    return Throttle()


def client_of() -> str:
    """Who is signing in, as far as the server can tell: the client's address (behind a
    reverse proxy, the proxy's; `X-Forwarded-For` is not trusted, anyone can send it)."""
    try:
        return str(st.context.ip_address or "unknown")
    except (AttributeError, RuntimeError):
        return "unknown"


def sign_in(cfg: DashboardConfig, user: str, password: str, client: str, gate: Throttle) -> tuple[Viewer | None, str]:
    """Check credentials through the throttle: (the viewer, "") or (None, why not)."""
    wait = gate.wait(user, client)
    if wait > 0:
        return None, f"Too many failed sign-ins: try again in {_seconds(wait)}."
    viewer = check_password(cfg, user, password)
    if viewer is None:
        gate.failed(user, client)
        return None, "Wrong user or password."
    gate.succeeded(user, client)
    return viewer, ""


def _seconds(wait: float) -> str:
    s = int(wait + 0.999)
    return f"{s} s" if s < 120 else f"{(s + 59) // 60} min"


def signed_in(cfg: DashboardConfig) -> bool:
    """Whether this session has a viewer already (draws nothing)."""
    if oidc_configured():
        return bool(st.user.is_logged_in) and from_identity(cfg, str(st.user.get("email") or "")) is not None
    return isinstance(st.session_state.get(SESSION_KEY), Viewer)


def current(cfg: DashboardConfig) -> Viewer | None:
    """The signed-in viewer; otherwise render the login and return None."""
    if oidc_configured():
        return _oidc(cfg)
    viewer = st.session_state.get(SESSION_KEY)
    if isinstance(viewer, Viewer):
        return viewer
    st.title("Meterline")
    if not passwords_configured(cfg):
        st.error(
            "No dashboard password is configured, so no data is shown. Set one in the environment "
            f"before starting the dashboard: `export {cfg.password_env}=...` (user `{cfg.admin_user}`), "
            "or configure OIDC sign-in in `.streamlit/secrets.toml` (`[auth]`)."
        )
        return None
    with st.form("login"):
        user = st.text_input("User", value=cfg.admin_user, key="login_user")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        viewer, why = sign_in(cfg, user.strip(), password, client_of(), throttle())
        if viewer is None:
            st.error(why)
            return None
        st.session_state[SESSION_KEY] = viewer
        st.rerun()
    return None


def _oidc(cfg: DashboardConfig) -> Viewer | None:
    if not st.user.is_logged_in:
        st.title("Meterline")
        st.button("Sign in", on_click=st.login)
        return None
    email = str(st.user.get("email") or "")
    viewer = from_identity(cfg, email)
    if viewer is None:
        st.error(f"{email or 'This account'} may not open this dashboard: ask an admin to add it under `dashboard.viewers`.")
        st.button("Sign out", on_click=st.logout)
    return viewer


def sign_out() -> None:
    if oidc_configured():
        st.logout()
    st.session_state.pop(SESSION_KEY, None)


__all__ = ["Viewer", "check_password", "current", "from_identity", "oidc_configured", "sign_in", "sign_out", "signed_in", "throttle"]
