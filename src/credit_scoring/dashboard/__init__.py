"""The advisor dashboard (Streamlit): ``make dashboard``. It talks to the scoring API only."""
