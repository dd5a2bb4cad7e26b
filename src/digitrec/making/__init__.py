"""Making the shipped files: the reading model, the one-digit checker and the segment verifier.

`digitrec build-weights` (`digitrec.making.build`) writes numbers from MNIST training-split
digits, cuts them up with the segmenter (`cutouts`), fine-tunes the reading model on the
cut-out digits (`reader`) and trains the one-digit checker on the cut-out candidates (`checker`),
both with the project's one training loop (`digitrec.training.loop.train`), then fits the
segment verifier on numbers made of validation-split digits (`verifier_fit`) and chooses when a
number is flagged needs_review on the error-reject curve of others (`review_fit`). Never the test set.
"""
