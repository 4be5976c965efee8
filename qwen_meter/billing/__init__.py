"""What DashScope bills for a request to a named model.

It joins the two layers below: a model name is looked up (the model index, or the catalogue)
and its tokenizer family and chat template count the request (``count_messages(model=)``,
request features, media); the catalogue's prices turn usage into a :class:`Cost`
(``cost``, ``estimate_cost``), checked before sending (``check``, ``fit_messages``), for single
requests and batch files, for listed and unlisted models.

May use: ``base``, ``tokens``, ``catalogue``. Never the limits, the meter or any face.
"""
