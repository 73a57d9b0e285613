module fuzzprobe

go 1.26
