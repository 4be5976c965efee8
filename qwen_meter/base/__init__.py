"""The base layer: the exception tree, argument checks and the data files.

It knows no model, no tokenizer and no price: everything else in qwen_meter may import it, and
it imports nothing of qwen_meter's.
"""
