"""Images in and out (SimpleITK, with checks that name the file), and volumes to training slices."""
