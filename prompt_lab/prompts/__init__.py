"""Prompt templates, their rendering in a sandbox, and the prompting strategies built from them."""
