"""Reading digits and numbers from images: decoding, preprocessing, segmentation, recognition."""
