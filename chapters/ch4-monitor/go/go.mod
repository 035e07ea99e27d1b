module leaklab/ch4-monitor/readmemstats

go 1.19
