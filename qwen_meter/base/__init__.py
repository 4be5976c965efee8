"""The base layer: the exception tree, argument checks, the data files, the shape of a
dated snapshot name (``snapshots``) and counted nouns (``words``: "1 call", "2 calls").

It knows no model, no tokenizer and no price: everything else in qwen_meter may import it, and
it imports nothing of qwen_meter's.
"""
