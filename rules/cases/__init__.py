"""Electronic supervision (电子监察) of case time limits: clocks, lights, KPIs."""
