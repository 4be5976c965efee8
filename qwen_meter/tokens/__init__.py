"""Tokens: how a text or a chat becomes token ids, with no model names.

Tokenizer families and backends (tiktoken over the shipped rank files, a local transformers
tokenizer, a heuristic), chat-template profiles and the one renderer they drive, media
arithmetic (images, audio, video) and the checks of message parts.

May use: ``base`` only. The model index (in ``billing``) may hand it the tokenizer and template
tables through :func:`.tables.set_table_source`; without it the tables are read from ``data/``.
"""
