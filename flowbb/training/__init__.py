"""flowbb.training"""
