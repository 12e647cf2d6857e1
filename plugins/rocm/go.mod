module github.com/baiagent/baiagent/plugins/rocm

go 1.26.8

require github.com/baiagent/baiagent/proto v0.0.0

replace github.com/baiagent/baiagent/proto => ../../proto
