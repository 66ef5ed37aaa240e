"""The wiring: settings of every section, the service assembled from the stages, live
reload, the demo and the command line. It sits above every stage; nothing imports it."""
