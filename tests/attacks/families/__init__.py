"""Attack families, one module each: ``build(out, marker, benign) -> list[Attack]``.

``out`` is a folder of the family's own, ``marker`` the path every payload tries to create,
``benign`` the folder of benign torch/Keras files to mutate (see ``build_corpus.benign_*``).
"""
