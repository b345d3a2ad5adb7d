//! Data in: real datasets, synthetic sets, PyTorch files, teachers, random subsets.
