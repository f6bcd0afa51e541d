"""raycondi: confidence-distilled clip selection for batch video labelling on Ray."""
