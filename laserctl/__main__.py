from laserctl.cli import main

main()
