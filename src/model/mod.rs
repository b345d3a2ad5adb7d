//! ConvNet students over a flat (S, P) parameter buffer: specs, parameter layout, init, forward and
//! a hand-written backward.
