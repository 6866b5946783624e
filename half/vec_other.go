//go:build !amd64

package half

// Without a vector path every element goes through the Go kernels.

func encodeBF16Vec([]uint16, []uint32) int { return 0 }

func truncBF16Vec([]uint16, []uint32) int { return 0 }

func decodeBF16Vec([]uint32, []uint16) int { return 0 }

func addEncodeBF16Vec([]uint16, []uint32) int { return 0 }

func addRoundBF16Vec([]uint32, []uint16, float32) int { return 0 }

func encodeFP16Vec([]uint16, []uint32) int { return 0 }

func decodeFP16Vec([]uint32, []uint16) int { return 0 }

func addEncodeFP16Vec([]uint16, []uint32) int { return 0 }

func addRoundFP16Vec([]uint32, []uint16, float32) int { return 0 }
