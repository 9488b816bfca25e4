"""The Streamlit dashboard: lays out what `reports` computes, nothing more."""

from pathlib import Path

APP_PATH = Path(__file__).with_name("app.py")
