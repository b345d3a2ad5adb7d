//! Augmentations (DSA, Mixup, CutMix, ZCA) with counter-based draws shared by every backend.
