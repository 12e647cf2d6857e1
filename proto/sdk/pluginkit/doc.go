// Package pluginkit holds the pieces that compute plugins built on the SDK
// share: readers for configuration values that report problems as
// sdk.ConfigProblem, the fan-out of device lists to WatchDevices callers
// together with the polling loop that re-reads devices, and Background,
// which runs such a loop so that Configure can replace it and Close end it.
package pluginkit
