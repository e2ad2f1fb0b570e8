"""Whole-field malaria smear: find red cells, crop them like NIH cell crops, evaluate the finder.

Public API:
    find_cells(rgb) -> FieldCells                 core.fields.finder (classical: checks, size estimate, masks)
    load_detector() -> Detector | None            core.fields.detector (learned boxes; trained by
        `python -m core.fields.detector_train`)
    locate_cells(rgb, finder="learned")           core.fields.screen (the boxes screening uses)
    crop_cells(rgb, field_cells, size=64)         core.fields.crops
    crop_boxes(rgb, boxes, size=64, field_cells=None)   core.fields.crops
    cut_cells(rgb, boxes, cut=, stain=)           core.fields.cuts (the crops a model sees, in training and in
        use; `session_crops`, `hard_negative_crops` for training)
    load_fields(split_or_sessions)                core.fields.annotations
    iou_matrix, match_greedy, field_detection     core.fields.matching
    evaluate_finder(split_or_sessions)            core.fields.finder_eval (import it from there;
        also `python -m core.fields.finder_eval --sessions S2,S3 [--out file.json]`)
    review_threshold(model_id, screens), review_queue(probabilities, threshold)   core.fields.review (the cell review
        queue; import it from there; its budget is chosen by `python -m core.fields.review --model ID [--test]`)
"""
from core.fields.annotations import FieldAnnotation, load_fields
from core.fields.crops import crop_boxes, crop_cells
from core.fields.finder import NO_CELLS_MESSAGE, FieldCells, find_cells
from core.fields.matching import field_detection, iou_matrix, match_greedy

__all__ = [
    "FieldAnnotation",
    "FieldCells",
    "NO_CELLS_MESSAGE",
    "crop_boxes",
    "crop_cells",
    "field_detection",
    "find_cells",
    "iou_matrix",
    "load_fields",
    "match_greedy",
]
