package runnerclient

// InputConnected says whether c's input connection is open.
func InputConnected(c *Client) bool { return c.inputConnected() }
