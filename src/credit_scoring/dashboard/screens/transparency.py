"""The transparency page (run by st.navigation in app.py)."""

from credit_scoring.dashboard.views import transparency_page

transparency_page()
