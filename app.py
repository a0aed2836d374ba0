"""Prompt Lab web app: `python app.py` (or `make run`) serves it; Hugging Face Spaces runs this file too."""
from prompt_lab.ui import build_demo, launch

demo = build_demo()

if __name__ == "__main__":
    launch(demo)
