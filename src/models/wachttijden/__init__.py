"""Hospital waiting times (wachttijden): the data set's shape and the regression model that serves it."""
