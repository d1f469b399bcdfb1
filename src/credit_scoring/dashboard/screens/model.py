"""The model page (run by st.navigation in app.py)."""

from credit_scoring.dashboard.views import model_page

model_page()
