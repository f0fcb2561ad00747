//! PXE replies for option 93 = 0, 7, 9, 11, 16 and for user class "iPXE" in both encodings.
