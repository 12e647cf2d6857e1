// Package pluginkit holds the pieces that compute plugins built on the SDK
// share: readers for configuration values that report problems as
// sdk.ConfigProblem, and the fan-out of device lists to WatchDevices
// callers together with the polling loop that re-reads devices.
package pluginkit
