"""The advisor dashboard: ``make dashboard`` (``streamlit run`` of this file).

An advisor signs in (the bank's OIDC provider through ``st.login``; in development, a
development identity), finds a client with filters, and reads the score, the decision and
why, with the client compared with others. Every number comes from the scoring API, called
with the advisor's token; the API records who looked at which client.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from credit_scoring.dashboard.settings import DashboardSettings

APP = "Credit advisor dashboard"


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def sign_in(settings: DashboardSettings) -> str:
    """The advisor's bearer token for the API, or a sign-in page (and stop)."""
    if _oidc_configured():
        if not st.user.is_logged_in:
            st.set_page_config(page_title=f"Sign in · {APP}", layout="wide")
            st.title("Sign in")
            st.write("Sign in with your bank account to see your clients' scores.")
            st.button("Sign in", on_click=st.login, type="primary")
            st.stop()
        token = st.user.tokens.get("access")
        if not token:
            st.error(
                "Signed in, but the identity provider's access token is not available: add "
                '`expose_tokens = ["access"]` to [auth] in .streamlit/secrets.toml.'
            )
            st.stop()
        return str(token)
    if settings.environment != "development":
        st.set_page_config(page_title=f"Sign-in not configured · {APP}")
        st.error(
            "No sign-in is configured. Outside development the dashboard only signs advisors in "
            "through the bank's identity provider: add an [auth] section to "
            ".streamlit/secrets.toml (see docs/dashboard.md, 'Sign-in in production')."
        )
        st.stop()
    token = st.session_state.get("token")
    if token:
        return str(token)
    st.set_page_config(page_title=f"Sign in (development) · {APP}", layout="wide")
    st.title("Sign in (development)")
    st.warning(
        "Development sign-in: anyone can claim any identity here. It is refused outside "
        "development (CREDIT_SCORING_ENVIRONMENT), where advisors sign in through the bank's "
        "identity provider."
    )
    with st.form("development-sign-in"):
        advisor = st.text_input("Your advisor id", value="advisor-dev", max_chars=64)
        submitted = st.form_submit_button("Sign in with a development identity", type="primary")
    if submitted and advisor.strip():
        from credit_scoring.auth.tokens import mint_development_token

        st.session_state["token"] = mint_development_token(advisor.strip(), ["advisor"])
        st.session_state["advisor"] = advisor.strip()
        st.rerun()
    st.stop()
    raise AssertionError  # st.stop() does not return


def sign_out() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    if _oidc_configured() and st.user.is_logged_in:
        st.logout()


def main() -> None:
    settings = DashboardSettings()
    token = sign_in(settings)
    context: dict[str, Any] = {"settings": settings, "token": token}
    st.session_state["context"] = context
    with st.sidebar:
        who = st.session_state.get("advisor") or getattr(st.user, "email", None) or "advisor"
        st.write(f"Signed in as **{who}**")
        st.button("Sign out", on_click=sign_out)
    navigation = st.navigation(
        [
            st.Page("screens/client.py", title="Client score", url_path="client", default=True),
            st.Page("screens/model.py", title="Model card", url_path="model"),
            st.Page("screens/transparency.py", title="Transparency", url_path="transparency"),
        ]
    )
    navigation.run()


main()
