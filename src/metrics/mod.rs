//! DD-Ranking scores: the training plan, accuracies, HLR / IOR / LRS and ARS.
