"""Attack scripts of issue 11 at full size (the suite runs them smaller)."""
