"""The client page (run by st.navigation in app.py)."""

from credit_scoring.dashboard.views import client_page

client_page()
