//! Nothing here: the tests are what a reader would write.
