VALUE = 42  # a sibling module shipped with the script (source_dir)
