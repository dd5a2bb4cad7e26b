"""Forms: handwriting inside printed structure (comb boxes, ruled lines, frames).

- `rulings`, `lines`, `frames`: find the printed lines (any grey, slightly skewed, dashed or
  dotted) and tell box sides from handwriting.
- `unrule`: take them out and give back the handwriting where a stroke crosses a line.
- `comb`: a row of boxes is its own segmentation: one digit or nothing per box.
- `synth`: comb fields and ruled lines rendered from MNIST digits, with their ground truth.
- `field`: read one field (`read_field`): a comb box by box, a ruled line or frame after the print
  is removed, plain paper as a number; `results.FieldReading` is what it answers.
- `template`, `page`: a page's named field boxes (JSON, `--field NAME=x,y,w,h`), the page
  straightened (`deskew`) and every field read (`read_page`, `read_document` for PDFs and TIFFs).
- `task`: `FormTask`, the pages of many files read as `digitrec.reading.batch` reads numbers
  (`digitrec read --template`); `overlay`: a page's readings drawn on it.
"""
