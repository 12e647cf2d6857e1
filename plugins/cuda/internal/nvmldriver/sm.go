package nvmldriver

// coresPerSM is CUDA cores per streaming multiprocessor by compute
// capability (the table behind the CUDA samples' _ConvertSMVer2Cores);
// 0 for an unknown architecture.
func coresPerSM(computeCapability string) int {
	switch computeCapability {
	case "3.0", "3.2", "3.5", "3.7":
		return 192
	case "6.0", "7.0", "7.2", "7.5", "8.0":
		return 64
	case "5.0", "5.2", "5.3", "6.1", "6.2", "8.6", "8.7", "8.9", "9.0",
		"10.0", "10.1", "10.3", "11.0", "12.0", "12.1":
		return 128
	}
	return 0
}

// MultiprocessorsFromCores derives the SM count from the CUDA core count;
// 0 when the architecture is unknown.
func MultiprocessorsFromCores(cores int, computeCapability string) uint32 {
	perSM := coresPerSM(computeCapability)
	if perSM == 0 || cores <= 0 {
		return 0
	}
	return uint32(cores / perSM)
}
