"""The streaming loop end to end: real `undertow worker` processes, a real broker, real Redis."""
