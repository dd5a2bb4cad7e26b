"""Reading digits and numbers from images: from the bytes a user hands in to a `Prediction` or a
`Reading`. The modules, in the order an image meets them:

- `decode`: bytes or a path to an upright grayscale image; bad files become one-line errors.
- `ink`, `pieces`, `ndexact`: polarity, background, the ink mask and its connected pieces.
- `preprocess`: one digit as MNIST made its digits (20x20 box, centre of mass in 28x28) and the
  model's input tensor. This is the one path every prediction, the server and the notebook take.
- `atoms`, `seams`, `candidates`: a line of digits cut into atoms (pieces, split by seams through
  touching digits) and the candidate digits (runs of atoms) worth classifying.
- `features`, `verifier`, `segment`: each candidate described by named features, scored by the
  verifier (`weights/verifier.json`) and the classifier, and the best segmentation decoded;
  `search`: the same decoding with bounds, classifying only the candidates that can still matter
  (what `Recognizer.read` uses);
  `confidence`: how likely the number read is to be right, which decides `needs_review`.
- `recognize`: `Recognizer`, a checkpoint plus a backend: `predict` (one digit, with rejection)
  and `read` (a number, with `needs_review`). `results` holds what they return.
- `overlay`: a reading drawn over its image. `synth`: handwriting rendered from MNIST
  digits as photos, scans and forms, for tests, benchmarks and the making of the shipped weights.
"""
